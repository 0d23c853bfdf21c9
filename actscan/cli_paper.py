"""``actscan paper``: the subset-scanning paper's full MNIST / Fashion-MNIST setup.

Example::

    actscan paper --dataset mnist --source ../shared/data/mnist --ae-epochs 20 --clf-epochs 4

Registered on the main app by :func:`register` (actscan/cli.py calls it).
"""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add the ``paper`` command to ``app``."""

    @app.command("paper")
    def paper(
        dataset: str = typer.Option("mnist", "--dataset", help="mnist or fashion-mnist."),
        source: str | None = typer.Option(None, "--source", help="Folder with the four IDX files (gz or raw)."),
        run_id: str = typer.Option("", "--run-id", help="Run name; default paper-<dataset>."),
        data_root: str | None = typer.Option(None, "--data-root", help="Data root (path or fsspec URL)."),
        seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
        ae_epochs: int = typer.Option(100, "--ae-epochs", help="Autoencoder epochs (paper: 100)."),
        clf_epochs: int = typer.Option(10, "--clf-epochs", help="Classifier epochs."),
        clf_schedule: str = typer.Option("constant", "--clf-schedule", help="Classifier learning rate: constant or cosine (decayed to 0)."),
        patience: int | None = typer.Option(None, "--patience", help="Early stopping on the validation split (trains on the train split only)."),
        attacks: str = typer.Option("fgsm,bim,deepfool", "--attacks", help="Comma-separated: fgsm, bim, deepfool."),
        fgsm_eps: float = typer.Option(0.01, "--fgsm-eps", help="FGSM L-inf epsilon in [0, 1] pixels."),
        bim_eps: float = typer.Option(0.01, "--bim-eps", help="BIM L-inf epsilon."),
        bim_eps_step: float = typer.Option(0.002, "--bim-eps-step", help="BIM step."),
        bim_max_iter: int = typer.Option(100, "--bim-max-iter", help="BIM iterations."),
        deepfool_epsilon: float = typer.Option(1e-6, "--deepfool-epsilon", help="DeepFool overshoot."),
        deepfool_max_iter: int = typer.Option(100, "--deepfool-max-iter", help="DeepFool iterations."),
        n_test: int | None = typer.Option(None, "--n-test", help="Attack a seeded sample of this many test images (default all 10,000)."),
        deepfool_limit: int | None = typer.Option(None, "--deepfool-limit", help="DeepFool on at most this many (about 19 s per 200 images)."),
        bim_limit: int | None = typer.Option(None, "--bim-limit", help="BIM on at most this many (100 iterations each; a seeded sample nested with DeepFool's)."),
        poison: str = typer.Option("auto", "--poison", help="BIM-noised training fractions, e.g. 0.01,0.09; auto = those for fashion-mnist, none for mnist."),
        chunk_rows: int = typer.Option(1000, "--chunk-rows", help="Records per Zarr chunk."),
        extract_dtype: str = typer.Option("float32", "--extract-dtype", help="float32 or float16 activations."),
        threads: int = typer.Option(1, "--threads", help="Torch CPU threads (1 is fastest on a busy 2-core machine)."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        stages: str = typer.Option("all", "--stages", help="Comma-separated stages or 'all': ingest, classifier, autoencoder, attack, poison, extract, summary."),
        force: bool = typer.Option(False, "--force/--no-force", help="Recompute stages whose outputs exist."),
        progress: bool = typer.Option(False, "--progress/--no-progress", help="Progress bars (the log reports progress either way)."),
    ) -> None:
        """Run the paper's full setup: ingest -> classifier + autoencoder (+ poisoned) -> FGSM/BIM/DeepFool -> extract."""
        from tasks.paper_stages import PaperConfig

        try:
            cfg = PaperConfig(
                dataset=dataset, source=source, run_id=run_id, data_root=data_root, seed=seed,
                ae_epochs=ae_epochs, clf_epochs=clf_epochs, clf_schedule=clf_schedule, patience=patience, attacks=attacks,
                fgsm_eps=fgsm_eps, bim_eps=bim_eps, bim_eps_step=bim_eps_step,
                bim_max_iter=bim_max_iter, deepfool_epsilon=deepfool_epsilon,
                deepfool_max_iter=deepfool_max_iter, n_test=n_test, deepfool_limit=deepfool_limit,
                bim_limit=bim_limit,
                poison=poison, chunk_rows=chunk_rows, extract_dtype=extract_dtype, threads=threads,
                device=device, stages=stages, force=force, progress=progress)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        from actscan.settings import configure_prefect

        configure_prefect()
        from flows.paper import paper_flow

        t0 = time.perf_counter()
        out = paper_flow(cfg)
        console.print(f"[bold]paper {cfg.dataset}[/bold] finished in {time.perf_counter() - t0:.1f} s")
        print_paper_summary(out)


def print_paper_summary(out: dict) -> None:
    """Print the headline figures and seconds per stage of a paper run."""
    summ = out.get("summary")
    if not summ:
        console.print_json(json.dumps(out, default=str))
        return
    table = Table(title=f"{summ['dataset']} ({summ['run_id']})")
    for col in ("stage", "item", "metric", "value", "seconds"):
        table.add_column(col)
    for r in summ["table"]:
        v, sec = r.get("value"), r.get("seconds")
        table.add_row(r["stage"], str(r["item"]), str(r["metric"]),
                      "" if v is None or v != v else (f"{v:.4f}" if abs(v) < 10 else f"{v:.0f}"),
                      "" if sec is None or sec != sec else f"{sec:.1f}")
    console.print(table)
    wall = {k: v.get("wall_seconds") for k, v in out.items() if isinstance(v, dict) and "wall_seconds" in v}
    console.print(f"wall seconds per stage: {wall}")
