"""``actscan a3``: the A^3 paper's experiments (Tables 3 and 4) on ingested real data.

Registered on the main app by ``register(app)``. Module-level imports are light (typer only):
Prefect, Dask and torch load inside the command.

    actscan a3 --experiments 1c,2c,1d,2d --known 100 --seeds 4 \\
        --source-nsl-kdd ../shared/data/nsl-kdd --data-root /work/a3-runs
    actscan a3 --experiments 1a,2a --known 0,5,25,50,100 --seeds 4 \\
        --source-mnist ../shared/data/mnist --mu 0.1 --epochs 60 \\
        --methods a3,ae,iforest,dagmm,devnet,deepsad --dask-address tcp://scheduler:8786
    actscan a3 --experiments exp3 --known 100 --seeds 4 --methods a3,iforest,dagmm,devnet \\
        --source-mnist ../mnist --source-emnist-letters ../emnist   # folder with gzip.zip

``--experiments`` also takes ``table3`` (1a-1d, 2a-2d), ``exp3`` (3a-3d: MNIST digits normal,
EMNIST letters anomalous, a classifier target; needs both ``--source-mnist`` and
``--source-emnist-letters`` once) and ``table4`` (4a-4d). ``--seeds N``
uses the first N of the authors' seeds (2409, 2903, 3003, 3103, 706); a comma list gives
seeds explicitly. Results: ``<data-root>/runs/a3/tables/a3_results.parquet``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"{name}: comma-separated integers expected, got {text!r}") from exc


def _anomaly_weight(text: str) -> float | str:
    """``--anomaly-weight``: "auto" or a number >= 1."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        w = float(text)
    except ValueError:
        w = float("nan")
    if not 1.0 <= w < float("inf"):
        raise typer.BadParameter(f"--anomaly-weight: a number >= 1 or 'auto' expected, got "
                                 f"{text!r}")
    return w


def a3_command(
    experiments: Annotated[str, typer.Option(
        "--experiments", help="Experiment ids (1a..2f, 1g, 3a..3d, 4a..4d), comma-separated, "
        "or table3 / exp3 / table4.")] = "table3",
    known: Annotated[str, typer.Option(
        "--known", help="Numbers of known anomalies, comma-separated (paper: 5,25,50,100; "
        "Table 3: 100). Experiments 4a-4d always use 0.")] = "100",
    seeds: Annotated[str, typer.Option(
        "--seeds", help="N: the first N of the authors' seeds; or a comma list of seeds.")] = "4",
    methods: Annotated[str, typer.Option(
        "--methods", help="Methods: a3, ae, iforest, dagmm, devnet, deepsad, subset_scan (actscan's subset scan of the target's activations).")]
    = "a3,ae,iforest,dagmm,devnet",
    source_mnist: Annotated[str | None, typer.Option(
        "--source-mnist", help="Folder with the MNIST IDX files (ingested if needed).")] = None,
    source_emnist_letters: Annotated[str | None, typer.Option(
        "--source-emnist-letters", help="Folder with the EMNIST letters IDX files "
        "(emnist-letters-*-idx?-ubyte.gz) or the publisher's gzip.zip (experiment 3).")] = None,
    source_nsl_kdd: Annotated[str | None, typer.Option(
        "--source-nsl-kdd", help="Folder with KDDTrain+.txt / KDDTest+.txt.")] = None,
    source_cicids2018: Annotated[str | None, typer.Option(
        "--source-cicids2018", help="Folder or URL of the CSE-CIC-IDS2018 day files.")] = None,
    source_creditcard: Annotated[str | None, typer.Option(
        "--source-creditcard", help="creditcard.csv or its folder.")] = None,
    data_root: Annotated[str | None, typer.Option(
        "--data-root", help="Data root (path or fsspec URL); default $ACTSCAN_DATA_ROOT or "
        "./actscan-data.")] = None,
    mu: Annotated[float, typer.Option("--mu", help="A^3 counterexample weight (paper 0.1; the "
                                      "authors' scripts 1.0).")] = 0.1,
    epochs: Annotated[int, typer.Option("--epochs", help="Alarm network epochs (paper 60).")] = 60,
    alarm_lr: Annotated[float, typer.Option("--alarm-lr", help="Alarm Adam learning rate "
                                            "(paper 1e-5).")] = 1e-5,
    anomaly_weight: Annotated[str, typer.Option(
        "--anomaly-weight", help="A^3 alarm's weight w of the known anomalies' BCE terms: a "
        "number >= 1 or 'auto' = min(100, ceil(n_normal / n_known)) (the authors' library "
        "default; their scripts and the default here: 1).")] = "1",
    target_epochs: Annotated[int, typer.Option("--target-epochs", help="Target network epochs "
                                               "(paper 30).")] = 30,
    vae_epochs: Annotated[int, typer.Option("--vae-epochs", help="VAE epochs (experiment 4).")] = 30,
    classifier_epochs: Annotated[int, typer.Option(
        "--classifier-epochs", help="Classifier target epochs (experiment 3; the Keras "
        "mnist_cnn example: 12).")] = 12,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Batch size (default 256; 2048 for cicids2018).")] = None,
    dagmm_epochs: Annotated[int | None, typer.Option(
        "--dagmm-epochs", help="DAGMM epochs (default 200).")] = None,
    max_normal_train: Annotated[int | None, typer.Option(
        "--max-normal-train", help="Cap on normal training records (seeded subsample; "
        "default all).")] = None,
    threads: Annotated[int, typer.Option("--threads", help="Torch threads per fit.")] = 1,
    dask_address: Annotated[str | None, typer.Option(
        "--dask-address", help="Dask scheduler address (default: a local cluster).")] = None,
    n_workers: Annotated[int, typer.Option("--n-workers", help="Local Dask workers.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run A^3 and its baselines on the paper's experiments; print mean ± std over seeds."""
    weight = _anomaly_weight(anomaly_weight)
    from tasks.a3_experiments import METHODS, format_summary, parse_experiments, parse_seeds

    try:
        exps = parse_experiments(experiments)
        seed_list = parse_seeds(seeds)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    bad = [m for m in method_list if m not in METHODS]
    if bad:
        raise typer.BadParameter(f"unknown methods {bad}; choose from {', '.join(METHODS)}")
    sources = {k: v for k, v in (("mnist", source_mnist),
                                 ("emnist-letters", source_emnist_letters),
                                 ("nsl-kdd", source_nsl_kdd),
                                 ("cicids2018", source_cicids2018),
                                 ("creditcard", source_creditcard)) if v}
    baseline_params = {"dagmm": {"epochs": dagmm_epochs}} if dagmm_epochs else {}
    from actscan.settings import configure_prefect

    configure_prefect()
    from flows.a3 import a3_flow

    out = a3_flow(experiments=exps, known=_ints(known, "--known"), seeds=seed_list,
                  methods=method_list, data_root=data_root, sources=sources, mu=mu,
                  epochs=epochs, alarm_lr=alarm_lr, target_epochs=target_epochs,
                  vae_epochs=vae_epochs, classifier_epochs=classifier_epochs,
                  batch_size=batch_size, baseline_params=baseline_params,
                  max_normal_train=max_normal_train, anomaly_weight=weight, threads=threads,
                  dask_address=dask_address, n_workers=n_workers)
    res = out["results"]
    if as_json:
        typer.echo(json.dumps(res["summary"], indent=2, default=str))
    else:
        typer.echo(format_summary(res["summary"]))
        typer.echo(f"\nresults: {res['table']}")
        for p in res["figures"]:
            typer.echo(f"figure: {p}")
    failures = out["fits"].get("failures") or []
    for f in failures:
        typer.echo(f"FAILED {f['unit']}: {f['error']}", err=True)
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``a3`` command to ``app``."""
    app.command("a3")(a3_command)
