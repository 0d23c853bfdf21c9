"""``actscan show methods``: both methods of actscan on both problem families, side by side.

* **Adversarial inputs** (the subset-scanning paper's setups, per run and attack, main
  autoencoder): the subset scan (Berk-Jones, upper tail) of the reconstruction error (Table 2)
  and of conv2d_1 (Table 1's first row), beside the A^3 alarm network trained on the same
  autoencoder's hidden activations with Gaussian-noise counterexamples (the ``a3detect``
  stage's ``a3_adversarial`` table). AUROC with its 95% DeLong interval; AP where the table has it.
* **Anomalies of the A^3 experiments** (``a3_results``: 1a-2d with 100 known anomalies, 4a-4d
  with none): A^3 (mu 0.1) beside ``subset_scan`` (two-tailed Berk-Jones over the same frozen
  target's hidden ReLU activations, no labels), mean +- sample std over seeds.

Tables missing from the data root leave their family out with a note. ``a3_root``: the data root
of the A^3 experiments when it is not ``root``.
"""

from __future__ import annotations

import math
from typing import Any

from actscan.cli_show import (
    ATTACK_LABEL,
    DATASET_LABEL,
    SCAN,
    Block,
    ShowResult,
    _attack_key,
    _in,
    _num,
    _sql_str,
    _tables,
)
from storage.query import run_query
from tasks import paper_numbers as paper

SCAN_LAYERS = ("recon_error", "conv2d_1")  # the paper's Table 2 and Table 1 headline spaces
A3_EXPERIMENTS = ("1a", "1b", "1c", "1d", "2a", "2b", "2c", "2d", "4a", "4b", "4c", "4d")
COLUMNS = ["family", "dataset", "setting", "case", "method", "detail", "auroc", "auroc_low",
           "auroc_high", "auroc_std", "ap", "ap_std", "n"]


def _tables_if(root: str, name: str, left_out: str, maker: str,
               notes: list[str]) -> dict[str, Any] | None:
    """The tables under ``root`` when ``name`` has rows; else None and a note."""
    tables = _tables(root)
    if name in tables and tables[name].rows:
        return tables
    notes.append(f"no {name} table under {root}: {left_out} left out (make it: {maker})")
    return None


def _adversarial(root: str, notes: list[str]) -> list[dict[str, Any]]:
    tables = _tables_if(root, "a3_adversarial", "the adversarial family is",
                        "actscan run --setup paper-mnist-matched, stage a3detect", notes)
    if tables is None:
        return []
    got = run_query("select run_id, dataset, attack, auroc, auroc_low, auroc_high, ap, "
                    "n_clean, n_noised from a3_adversarial where autoencoder = 'autoencoder'",
                    root).to_pylist()
    runs = sorted({r["run_id"] for r in got})
    out: list[dict[str, Any]] = []
    for r in got:
        out.append({"family": "adversarial", "dataset": r["dataset"], "setting": r["run_id"],
                    "case": r["attack"], "method": "a3", "detail": "alarm on all hidden ReLUs",
                    "auroc": r["auroc"], "auroc_low": r["auroc_low"],
                    "auroc_high": r["auroc_high"], "auroc_std": None, "ap": r["ap"],
                    "ap_std": None, "n": f"{r['n_clean']}+{r['n_noised']}"})
    in_runs = _in(runs)
    where = (f"autoencoder = 'autoencoder' and detector = {_sql_str(SCAN[0])} and score_fn = "
             f"{_sql_str(SCAN[1])} and tail = {_sql_str(SCAN[2])} and run_id in {in_runs}")
    for name, layer in (("table2", "recon_error"), ("table1", "conv2d_1")):
        if name not in tables:
            notes.append(f"no {name} table under {root}: subset scan of {layer} left out")
            continue
        q = (f"select run_id, dataset, attack, auroc, auroc_low, auroc_high, n_clean, n_noised "
             f"from {name} where {where} and layer = {_sql_str(layer)}")
        for r in run_query(q, root).to_pylist():
            out.append({"family": "adversarial", "dataset": r["dataset"], "setting": r["run_id"],
                        "case": r["attack"], "method": "subset_scan",
                        "detail": f"{layer}, Berk-Jones upper", "auroc": r["auroc"],
                        "auroc_low": r["auroc_low"], "auroc_high": r["auroc_high"],
                        "auroc_std": None, "ap": None, "ap_std": None,
                        "n": f"{r['n_clean']}+{r['n_noised']}"})
    return out


def _anomalies(root: str, notes: list[str]) -> list[dict[str, Any]]:
    if _tables_if(root, "a3_results", "the A^3 experiments are",
                  "actscan a3 --experiments table3 --methods a3,subset_scan", notes) is None:
        return []
    exps = _in(A3_EXPERIMENTS)
    q = ("select experiment, dataset, method, n_known, count(distinct seed) as seeds, "
         "avg(ap) as ap, stddev_samp(ap) as ap_std, avg(auroc) as auroc, "
         "stddev_samp(auroc) as auroc_std from a3_results where experiment in " + exps +
         " and ((method = 'a3' and abs(mu - " + repr(paper.A3_MU) + ") < 1e-9) or "
         "method = 'subset_scan') and n_known = case when experiment like '4%' then 0 else "
         f"{paper.TABLE3_KNOWN} end group by experiment, dataset, method, n_known")
    out = []
    for r in run_query(q, root).to_pylist():
        a3 = r["method"] == "a3"
        detail = (("VAE counterexamples" if r["experiment"].startswith("4") else
                   f"Gaussian noise, {r['n_known']} known") if a3
                  else "target's hidden ReLUs, Berk-Jones two-tailed")
        out.append({"family": "anomalies", "dataset": r["dataset"], "setting": "a3 experiments",
                    "case": r["experiment"], "method": r["method"], "detail": detail,
                    "auroc": r["auroc"], "auroc_low": None, "auroc_high": None,
                    "auroc_std": r["auroc_std"], "ap": r["ap"], "ap_std": r["ap_std"],
                    "n": f"{r['seeds']} seeds"})
    have = {r["method"] for r in out}
    for m in ("a3", "subset_scan"):
        if out and m not in have:
            notes.append(f"a3_results has no {m} rows (actscan a3 --methods {m})")
    return out


def _cell(r: dict[str, Any] | None) -> list[str]:
    if r is None:
        return ["-", "-"]
    if r["auroc_low"] is not None:
        spread = f"[{_num(r['auroc_low'])}, {_num(r['auroc_high'])}]"
    elif r["auroc_std"] is not None and math.isfinite(r["auroc_std"]):
        spread = f"± {_num(r['auroc_std'])}"
    else:
        spread = ""
    return [f"{_num(r['auroc'])} {spread}".strip(), _num(r["ap"])]


def methods_comparison(root: str, a3_root: str | None = None) -> ShowResult:
    """The comparison rows (:data:`COLUMNS`) and their printed blocks."""
    notes: list[str] = []
    rows = _adversarial(root, notes) + _anomalies(a3_root or root, notes)
    blocks = []
    adv = [r for r in rows if r["family"] == "adversarial"]
    if adv:
        body = []
        keys = sorted({(r["setting"], r["case"]) for r in adv},
                      key=lambda k: (k[0], _attack_key(k[1])))
        by = {(r["setting"], r["case"], r["method"], r["detail"].split(",")[0]): r for r in adv}
        for run, attack in keys:
            ds = next(r["dataset"] for r in adv if r["setting"] == run)
            line = [run, DATASET_LABEL.get(ds, ds), ATTACK_LABEL.get(attack, attack)]
            for layer in SCAN_LAYERS:
                line += _cell(by.get((run, attack, "subset_scan", layer)))
            line += _cell(next((r for r in adv if (r["setting"], r["case"], r["method"])
                                == (run, attack, "a3")), None))
            body.append(line)
        blocks.append(Block("Adversarial inputs (clean vs noised test images; AUROC [95% CI])",
                            ["run", "data", "attack"],
                            [f"subset scan {x}" for x in SCAN_LAYERS] + ["A^3 alarm"], body,
                            sub=("AUROC", "AP")))
    ano = [r for r in rows if r["family"] == "anomalies"]
    if ano:
        body = []
        by = {(r["case"], r["method"]): r for r in ano}
        for exp in [e for e in A3_EXPERIMENTS if any(r["case"] == e for r in ano)]:
            ds = next(r["dataset"] for r in ano if r["case"] == exp)
            seeds = sorted({r["n"] for r in ano if r["case"] == exp})
            body.append([exp, DATASET_LABEL.get(ds, ds), *_cell(by.get((exp, "subset_scan"))),
                         *_cell(by.get((exp, "a3"))), ", ".join(seeds)])
        blocks.append(Block("Anomalies of the A^3 experiments (test split; AUROC ± std over seeds)",
                            ["exp", "data"], ["subset scan (activations)", "A^3"], body,
                            sub=("AUROC", "AP"), right=("seeds",)))
    return ShowResult("Both methods on both problem families: subset scanning and A^3 on the "
                      "same models and records", COLUMNS, rows, blocks, notes)
