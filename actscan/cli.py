"""The ``actscan`` command line.

    actscan setups                                  # the shipped presets
    actscan run [--setup NAME|FILE] [--set k=v]...  # every stage of a setup (default embedded-mnist)
    actscan run --setup paper-mnist --show          # the resolved specification, nothing run
    actscan results [--setup ...]                   # the AUROC table of a finished run
    actscan show paper-table1|paper-table2|a3-table3|a3-table4|top-anomalies
    actscan query "SQL" / actscan tables            # read-only SQL over the Parquet tables
    actscan ingest <dataset> --source <folder>      # a real data set into the Zarr store
    actscan a3 ... / actscan report ...             # the A^3 experiments / an HTML report
    actscan server start|stop|status                # a long-lived Prefect API server

Global options (before the command): ``--verbose`` prints Prefect's and Dask's own log lines on
the terminal too; ``--debug`` prints the full traceback of a failed command.

**Imports.** Module-level imports stay light (typer, the settings): the flows, torch, Prefect
and Dask load only inside the commands that run a pipeline (``run``, ``ingest``, ``a3``), so
``--help``, ``setups``, ``run --show``, ``results``, ``show``, ``query``, ``tables``,
``report`` and ``server status`` never start Prefect nor import torch (tested).

**Errors.** An exception from any command prints one line ``error: <message>`` (the message
names the file, row or parameter as the exception does) and exits with

    2  bad input: ValueError (SpecError, a bad option, a query error), FileNotFoundError
       (a missing source file or table)
    3  malformed data: DataFormatError (and ChecksumError, StoreIntegrityError,
       IncompleteDatasetError, TableSchemaError)
    1  anything else (the line starts with the exception's type)
    128+N  stopped by signal N (130 Ctrl-C, 143 SIGTERM)

The full traceback goes to ``$ACTSCAN_HOME/logs/<time>-<command>-<pid>.log`` and, with
``--debug``, to the terminal.

**Logs of a pipeline command.** Everything at INFO goes to that log file: actscan's own lines,
Prefect's (flow and task runs, the temporary server) and Dask's ``distributed.*`` (scheduler
and worker processes). The terminal shows actscan's progress lines (and other libraries'
warnings); Prefect's chatter, Prefect's tracebacks of a failed flow (80+ lines) and
``distributed.*`` INFO lines stay in the file unless ``--verbose``. How: before Prefect is
imported, the root logger gets actscan's handlers, so Prefect's ``setup_logging`` leaves the
root logger alone (it does so when the root already has a user handler) and its console handler
is never attached to it; Dask gets ``DASK_DISTRIBUTED__LOGGING`` (a logging dictConfig that its
worker processes inherit) writing to the same file. ``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL``
(and any other ``PREFECT_LOGGING_*`` or ``DASK_*`` variable) set by you wins.

**Signals.** While a pipeline command runs, SIGINT, SIGTERM and SIGHUP raise
``KeyboardInterrupt`` in the command (Prefect marks the flow run crashed), then the command
stops the temporary Prefect server it started and terminates every child process it started
(Dask workers, uvicorn) before exiting with 128+N; a second signal, or a command that has not
unwound after ``ACTSCAN_SHUTDOWN_GRACE`` seconds (default 20), kills them at once.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any

import typer

from actscan.settings import LogFileHandler, configure_prefect, logs_dir

EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_BAD_DATA = 3
#: Exception classes (by name, so that nothing heavy is imported to test them) meaning malformed data.
BAD_DATA_ERRORS = frozenset({"DataFormatError", "ChecksumError", "StoreIntegrityError",
                             "IncompleteDatasetError", "TableSchemaError"})
#: Commands that run flows: they get the log file, quiet consoles and the signal handlers.
PIPELINE_COMMANDS = {"run", "ingest", "a3", "fit-scorer", "score-new", "serve"}
#: Commands defined in their own modules (``actscan/cli_<name>.py`` with ``register(app)``).
EXTENSIONS = ("cli_ingest", "cli_query", "cli_show", "cli_report", "cli_a3", "cli_server", "cli_serve",
              "cli_layers", "cli_figures")

EXIT_CODES_HELP = ("Exit codes: 0 done; 2 bad input (an option, setup, file or table); 3 malformed "
                   "data; 1 any other error; 128+N stopped by signal N. A failed command prints "
                   "one line 'error: ...'; the traceback goes to $ACTSCAN_HOME/logs/ (and the "
                   "terminal with --debug).")

app = typer.Typer(add_completion=False, no_args_is_help=True, epilog=EXIT_CODES_HELP,
                  pretty_exceptions_enable=False,
                  help="actscan: anomaly detection from neural-network activations.")


class _State:
    verbose = False
    debug = False


STATE = _State()

SetupOpt = Annotated[str, typer.Option("--setup", help="Preset name (see `actscan setups`) or path to a setup YAML file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override any field: section.field=value (YAML value), e.g. attacks.fgsm.eps=0.05; repeatable.")]


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", envvar="ACTSCAN_VERBOSE", help="Also print Prefect's and Dask's log lines (they always go to the log file).")] = False,
    debug: Annotated[bool, typer.Option("--debug", envvar="ACTSCAN_DEBUG", help="Print the full traceback of a failed command (always in $ACTSCAN_HOME/logs/).")] = False,
) -> None:
    """actscan: anomaly detection from neural-network activations."""
    STATE.verbose, STATE.debug = verbose, debug


def _console() -> Any:
    from rich.console import Console

    return Console()


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``error: message`` on stderr (one line) and exit with ``code``."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


def resolve_spec(setup: str, sets: list[str] | None, **shortcuts: Any) -> Any:
    """The RunSpec of ``setup`` with ``--set`` overrides and the shortcut options applied."""
    from tasks.spec import SpecError, load_setup

    paths = {"source": "data.source", "data_root": "execution.data_root", "run_id": "run_id",
             "seed": "seed", "dask_address": "execution.dask_address",
             "n_workers": "execution.n_workers", "device": "execution.device",
             "threads": "execution.threads", "progress": "execution.progress"}
    overrides = [f"{paths[k]}={json.dumps(v)}" for k, v in shortcuts.items() if v is not None]
    try:
        return load_setup(setup, [*overrides, *(sets or [])])
    except SpecError as exc:
        fail(str(exc))


@app.command("setups")
def setups_command() -> None:
    """List the shipped setups (presets): copy one, edit it, run it with --setup FILE."""
    from rich.markup import escape

    from tasks.spec import SETUPS_PACKAGE, list_setups

    console = _console()
    for name, desc in list_setups().items():
        console.print(f"[bold]{escape(name)}[/bold]")
        console.print(f"  {escape(desc)}", highlight=False)
    console.print(f"\nFiles: the package {SETUPS_PACKAGE} (tasks/setups/*.yaml).", highlight=False)


@app.command("run")
def run_command(
    setup: SetupOpt = "embedded-mnist",
    sets: SetOpt = None,
    show: Annotated[bool, typer.Option("--show", help="Print the resolved specification as YAML and stop.")] = False,
    stages: Annotated[str | None, typer.Option("--stages", help="Comma-separated stages to run (default all): ingest, train, poison, attack, extract, scan, results, evaluate, a3detect.")] = None,
    force: Annotated[list[str] | None, typer.Option("--force", help="Recompute this stage even when its outputs are current; repeatable.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Shortcut for --set data.source=...")] = None,
    data_root: Annotated[str | None, typer.Option("--data-root", help="Shortcut for --set execution.data_root=...")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Shortcut for --set run_id=...")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Shortcut for --set seed=...")] = None,
    dask_address: Annotated[str | None, typer.Option("--dask-address", help="Shortcut for --set execution.dask_address=...")] = None,
    n_workers: Annotated[int | None, typer.Option("--n-workers", help="Shortcut for --set execution.n_workers=...")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Shortcut for --set execution.device=...")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Shortcut for --set execution.threads=...")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bars (the log reports progress either way).")] = None,
) -> None:
    """Run a setup: ingest -> train -> poison -> attack -> extract -> scan -> results (->
    evaluate -> a3detect when enabled)."""
    spec = resolve_spec(setup, sets, source=source, data_root=data_root, run_id=run_id, seed=seed,
                        dask_address=dask_address, n_workers=n_workers, device=device,
                        threads=threads, progress=progress)
    if show:
        typer.echo(spec.to_yaml(), nl=False)
        return
    from tasks.stages import STAGES
    from tasks.stages.checks import preflight

    chosen = [s.strip() for s in stages.split(",") if s.strip()] if stages else list(STAGES)
    bad = [s for s in [*chosen, *(force or [])] if s not in STAGES]
    if bad:
        fail(f"--stages/--force: unknown stage(s) {', '.join(bad)}; stages are {', '.join(STAGES)}")
    try:
        preflight(spec)
    except ValueError as exc:
        fail(str(exc))
    configure_prefect()
    from rich.markup import escape

    from flows.pipeline import pipeline_flow

    t0 = time.perf_counter()
    started = time.time()
    out = pipeline_flow(spec=spec, stages=chosen, force=list(force or []))
    _console().print(f"[bold]run {escape(spec.run_id)}[/bold] ({escape(spec.setup)}) finished in "
                     f"{time.perf_counter() - t0:.1f} s")
    print_results(spec, out)
    _print_report(spec, started)


def _print_report(spec: Any, started: float) -> None:
    """Where this run's report is (written by the flow's last task), when it wrote one."""
    from storage.catalog import RunCatalog
    from storage.paths import is_url, join

    path = join(RunCatalog.for_run(spec.run_id, spec.execution.data_root).run_dir, "report.html")
    if is_url(path) or not spec.execution.report:
        return
    if os.path.exists(path) and os.path.getmtime(path) >= started - 1:
        _console().print(f"[bold]Report[/bold]: {path}", highlight=False)


def print_results(spec: Any, out: dict[str, Any]) -> None:
    """Print attack success, model metrics, the AUROC table (paper's Table 1 layout) and paths."""
    from rich.table import Table

    console = _console()
    att = out.get("attack", {}).get("attacks", {})
    if att:
        console.print("[bold]Attack settings and success[/bold] (successful records kept)")
        for name, s in att.items():
            console.print(f"  {name}: {s['params']} -> {s['n_success']} of {s['n_attempted']} "
                          f"successful ({100 * s['success_rate']:.1f}%)", highlight=False)
    tr = out.get("train", {})
    if "classifier" in tr and "autoencoder" in tr:
        console.print(f"[bold]Models[/bold]: autoencoder test BCE "
                      f"{tr['autoencoder'].get('test_loss', float('nan')):.4f}, classifier test "
                      f"accuracy {tr['classifier'].get('test_accuracy', float('nan')):.4f}")
    res = out.get("results")
    a3 = (out.get("a3detect") or {}).get("table")
    if not res:
        if a3:
            print_a3_adversarial(a3)
        return
    for ae, rows in res.get("by_autoencoder", {"autoencoder": res["auroc"]}).items():
        attacks = [k for k in (rows[0] if rows else {}) if k != "layer"]
        table = Table(title=f"AUROC of the individual subset scan, clean vs noised ({ae})",
                      min_width=60, caption=f"{spec.scan.score}, alpha_max {spec.scan.alpha_max}, "
                                            f"{spec.scan.tail}-tail p-values")
        table.add_column("layer")
        for a in attacks:
            table.add_column(f"{spec.data.dataset} {a.upper()}", justify="right")
        for row in rows:
            table.add_row(row["layer"], *(f"{row[a]:.3f}" for a in attacks))
        console.print(table)
    if a3:
        print_a3_adversarial(a3)
    console.print("[bold]Tables[/bold]")
    tables = dict(res["tables"])
    for stage in ("evaluate", "a3detect"):  # the optional stages' tables, when they ran
        tables.update((out.get(stage) or {}).get("tables") or {})
    for k, v in tables.items():
        console.print(f"  {k}: {v}", highlight=False)
    console.print("[bold]Stores[/bold]")
    for k, v in res["stores"].items():
        console.print(f"  {k}: {v}", highlight=False)


def print_a3_adversarial(rows: list[dict[str, Any]]) -> None:
    """Print the a3detect stage's table: A^3 as an adversarial-input detector per autoencoder
    and attack (AUROC with its 95% DeLong interval, AP, counts, fit seconds)."""
    from rich.table import Table

    table = Table(title="A^3 alarm network as an adversarial-input detector, clean vs noised",
                  min_width=60)
    for col in ("autoencoder", "attack", "AUROC [95% CI]", "AP", "clean", "noised", "fit s"):
        table.add_column(col, justify="left" if col in ("autoencoder", "attack") else "right",
                         no_wrap=col != "autoencoder")
    for r in rows:
        table.add_row(str(r["autoencoder"]), str(r["attack"]),
                      f"{r['auroc']:.3f} [{r['auroc_low']:.3f}, {r['auroc_high']:.3f}]",
                      f"{r['ap']:.3f}", str(r["n_clean"]), str(r["n_noised"]),
                      f"{r['fit_seconds']:.1f}")
    _console().print(table)


def _wide_auroc(table: Any, autoencoder: str) -> list[dict[str, Any]]:
    """One autoencoder's AUROC rows laid out like the paper's Table 1 (a row per layer)."""
    t = table[table["autoencoder"] == autoencoder]
    wide = t.pivot(index=["layer_index", "layer"], columns="attack", values="auroc")
    return wide.reset_index().sort_values("layer_index").drop(columns="layer_index").to_dict(orient="records")


@app.command("results")
def results_command(setup: SetupOpt = "embedded-mnist", sets: SetOpt = None,
                    data_root: Annotated[str | None, typer.Option("--data-root")] = None,
                    run_id: Annotated[str | None, typer.Option("--run-id")] = None) -> None:
    """Print the AUROC table of a finished run of a setup (from its Parquet tables)."""
    spec = resolve_spec(setup, sets, data_root=data_root, run_id=run_id)
    from storage.catalog import RunCatalog
    from storage.fs import exists
    from storage.paths import join
    from storage.tables import read_table

    cat = RunCatalog.for_run(spec.run_id, spec.execution.data_root)
    try:
        table = read_table(cat.table("auroc"))
    except FileNotFoundError:
        fail(f"run {spec.run_id!r} has no AUROC table at {cat.table('auroc')}: run it first "
             f"(actscan run --setup {spec.setup})")
    by_ae = {ae: _wide_auroc(table, ae) for ae in sorted(set(table["autoencoder"]))}
    tables = {"auroc": cat.table("auroc"), "scores": cat.table("scores")}
    out: dict[str, Any] = {}
    a3_url = join(cat.run_dir, "tables", "a3_adversarial.parquet")
    if exists(a3_url):
        a3 = read_table(a3_url)
        out["a3detect"] = {"table": a3.to_dict(orient="records")}
        tables["a3_adversarial"] = a3_url
    print_results(spec, {**out, "results": {"auroc": by_ae.get("autoencoder", []),
                                            "by_autoencoder": by_ae, "tables": tables,
                                            "stores": {"activations": cat.activations}}})


@app.command("paper", hidden=True)
def paper_command() -> None:
    """Gone: the paper's setups are presets of `actscan run`."""
    fail("`actscan paper` is gone: run `actscan run --setup paper-mnist --source "
         "../shared/data/mnist` (or --setup paper-fashion-mnist); `actscan setups` lists setups")


# ------------------------------------------------------------------------- errors and logs
def exit_code_of(exc: BaseException) -> int:
    """The documented exit code of an exception escaping a command."""
    names = {c.__name__ for c in type(exc).__mro__}
    if names & BAD_DATA_ERRORS:
        return EXIT_BAD_DATA
    if isinstance(exc, (ValueError, FileNotFoundError)):
        return EXIT_BAD_INPUT
    return EXIT_ERROR


def error_line(exc: BaseException) -> str:
    """``error: <message>`` on one line; other than bad input or data, led by the type's name."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if exit_code_of(exc) == EXIT_ERROR and not text.startswith(type(exc).__name__):
        text = f"{type(exc).__name__}: {text}"
    return f"error: {text}"


def new_log_path(command: str) -> Path:
    """``$ACTSCAN_HOME/logs/<YYYYmmdd-HHMMSS>-<command>-<pid>.log`` (created by its first line)."""
    return logs_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-{os.getpid()}.log"


_QUIET_FAMILIES = ("prefect", "distributed", "uvicorn", "fastapi", "httpx", "httpcore",
                   "asyncio", "tornado", "bokeh", "actscan")
_FILE_FORMAT = "%(asctime)s.%(msecs)03d | %(process)d | %(levelname)-7s | %(name)s - %(message)s"


class _NoTraceback(logging.Formatter):
    """A console formatter that leaves exception tracebacks to the log file."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


class _NotFamilies(logging.Filter):
    def __init__(self, families: tuple[str, ...]) -> None:
        super().__init__()
        self.families = families

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.name == f or record.name.startswith(f + ".") for f in self.families)


def _not_library_warning(record: logging.LogRecord) -> bool:
    """False for Python warnings raised inside Prefect or Dask (e.g. "Port 8787 is already in
    use" when a local cluster starts): chatter for the log file."""
    if record.name != "py.warnings":
        return True
    text = record.getMessage()
    return not any(f"{os.sep}{lib}{os.sep}" in text for lib in ("distributed", "prefect", "dask"))


def _capturing_warnings() -> bool:
    import warnings

    show = warnings.showwarning
    return getattr(show, "__module__", "") == "logging" and getattr(show, "__name__", "") == "_showwarning"


class Interrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM / SIGHUP received while a pipeline command runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _flush_prefect_logs(timeout: float) -> None:
    """Send Prefect's queued run logs to its API (at most ``timeout`` s), if Prefect is loaded."""
    handlers = sys.modules.get("prefect.logging.handlers")
    if handlers is None:
        return

    def drain() -> None:
        try:
            handlers.APILogWorker.drain_all(timeout=timeout)
        except Exception:  # nothing to flush, or no loop any more
            pass

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    t.join(timeout + 1)


class PipelineSession:
    """What a pipeline command runs inside: its log file, quiet consoles, signal handlers, and on
    the way out the shutdown of the temporary Prefect server and of its own child processes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, command: str, verbose: bool = False, debug: bool = False) -> None:
        self.command, self.verbose, self.debug = command, verbose, debug
        self.log_path = new_log_path(command)
        self.signum: int | None = None
        self.interrupted = False
        self._handlers: list[tuple[logging.Logger, logging.Handler]] = []
        self._removed: list[tuple[int, logging.Handler]] = []
        self._env: dict[str, str | None] = {}
        self._signals: dict[int, Any] = {}
        self._levels: dict[str, int] = {}
        self._captured = False
        self._done = False
        self._before: tuple[set[int], set[int]] = (set(), set())
        self._lock = threading.Lock()

    # -- logging
    def _add(self, logger: logging.Logger, handler: logging.Handler) -> None:
        logger.addHandler(handler)
        self._handlers.append((logger, handler))

    def _setenv(self, key: str, value: str) -> None:
        if key in os.environ:  # the user's (or an outer session's) value wins
            return
        self._env[key] = None
        os.environ[key] = value

    def _start_logging(self) -> None:
        root = logging.getLogger()
        file_handler = LogFileHandler(self.log_path)
        file_handler.setFormatter(logging.Formatter(_FILE_FORMAT, "%H:%M:%S"))
        file_handler.setLevel(logging.INFO)
        self._add(root, file_handler)
        console_fmt = _NoTraceback("%(asctime)s %(message)s", "%H:%M:%S") if not self.debug \
            else logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
        if self.verbose:
            loud = logging.StreamHandler(sys.stderr)
            loud.setFormatter(_NoTraceback("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S")
                              if not self.debug else logging.Formatter(_FILE_FORMAT, "%H:%M:%S"))
            loud.setLevel(logging.INFO)
            self._add(root, loud)
        else:
            mine = logging.StreamHandler(sys.stderr)  # actscan's progress lines
            mine.setFormatter(console_fmt)
            mine.setLevel(logging.INFO)
            mine.addFilter(lambda r: r.name != "actscan.cli")  # the session's own lines: file only
            mine.addFilter(lambda r: not getattr(r, "detail", False))  # tasks.progress.DETAIL
            self._add(logging.getLogger("actscan"), mine)
            others = logging.StreamHandler(sys.stderr)  # other libraries' warnings
            others.setFormatter(console_fmt)
            others.setLevel(logging.WARNING)
            others.addFilter(_NotFamilies(_QUIET_FAMILIES))
            others.addFilter(_not_library_warning)
            self._add(root, others)
            # Prefect configured already (tests, a second command in one process): its console
            # handler leaves the root logger while this command runs.
            for i, h in enumerate(list(root.handlers)):
                if type(h).__name__ == "PrefectConsoleHandler":
                    root.removeHandler(h)
                    self._removed.append((i, h))
            self._setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
            self._setenv("DASK_DISTRIBUTED__LOGGING", repr(self._dask_logging()))
        if not _capturing_warnings():  # Python warnings: to the file too (and filtered above)
            logging.captureWarnings(True)
            self._captured = True
        actscan_logger = logging.getLogger("actscan")
        self._levels["actscan"] = actscan_logger.level
        if actscan_logger.level == logging.NOTSET or actscan_logger.level > logging.INFO:
            actscan_logger.setLevel(logging.INFO)

    def _dask_logging(self) -> dict[str, Any]:
        """A logging dictConfig for ``distributed`` (this process and its worker processes):
        INFO to the log file, errors to the terminal."""
        path = str(self.log_path)
        return {
            "version": 1, "disable_existing_loggers": False,
            "formatters": {"file": {"format": _FILE_FORMAT, "datefmt": "%H:%M:%S"},
                           "console": {"format": "%(asctime)s %(name)s - %(message)s", "datefmt": "%H:%M:%S"}},
            "handlers": {"file": {"class": "actscan.settings.LogFileHandler", "filename": path,
                                  "formatter": "file", "level": "INFO"},
                         "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                     "formatter": "console", "level": "ERROR"}},
            "loggers": {"distributed": {"level": "INFO", "handlers": ["file", "console"], "propagate": False},
                        "tornado": {"level": "CRITICAL", "handlers": ["file"], "propagate": False},
                        "bokeh": {"level": "ERROR", "handlers": ["file"], "propagate": False}},
        }

    def _stop_logging(self) -> None:
        for logger, handler in reversed(self._handlers):
            logger.removeHandler(handler)
            handler.close()
        self._handlers.clear()
        root = logging.getLogger()
        for i, h in self._removed:  # back where it was: handler order decides who prints first
            if h not in root.handlers:
                root.handlers.insert(min(i, len(root.handlers)), h)
        self._removed.clear()
        for key in self._env:
            os.environ.pop(key, None)
        self._env.clear()
        if "actscan" in self._levels:
            logging.getLogger("actscan").setLevel(self._levels.pop("actscan"))
        if self._captured:
            logging.captureWarnings(False)
            self._captured = False

    # -- signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        with self._lock:
            first = self.signum is None
            self.signum = self.signum or signum
        if not first:  # a second signal: no more waiting
            self._hard_exit(signum)
        if signum == signal.SIGINT:
            from actscan.cli_server import temporary_server_down

            # Ctrl-C in a terminal reaches the whole process group, the temporary server too:
            # with it gone Prefect cannot record anything and would retry for long. Exit now.
            if temporary_server_down(self._before[1], wait=1.0):
                self._hard_exit(signum)
        grace = float(os.environ.get("ACTSCAN_SHUTDOWN_GRACE", "20"))
        threading.Thread(target=self._watchdog, args=(signum, grace), daemon=True,
                         name="actscan-shutdown").start()
        raise Interrupted(signum)

    def _watchdog(self, signum: int, grace: float) -> None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self._done:  # the command unwound in time
                return
            time.sleep(0.2)
        self._hard_exit(signum)

    def _hard_exit(self, signum: int) -> None:
        """Stop the temporary server and every child now, say so, and exit 128 + signum."""
        from actscan.cli_server import kill_new_children, stop_temporary_servers

        name = signal.Signals(signum).name
        try:
            logging.getLogger("actscan.cli").warning("interrupted by %s: stopping at once", name)
            sys.stderr.write(f"error: interrupted ({name})\n")
            sys.stderr.flush()
            stop_temporary_servers(self._before[1])
            kill_new_children(self._before[0], timeout=3)
        finally:
            os._exit(128 + signum)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s in self.SIGNALS:
            try:
                self._signals[s] = signal.signal(s, self._on_signal)
            except (ValueError, OSError):
                pass

    def _restore_signals(self) -> None:
        for s, handler in self._signals.items():
            try:
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        self._signals.clear()

    # -- the session
    def __enter__(self) -> PipelineSession:
        from actscan.cli_server import snapshot

        self._before = snapshot()
        self._start_logging()  # the file appears with the first record (none for run --show)
        self._install_signals()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        from actscan.cli_server import kill_new_children, stop_temporary_servers

        log = logging.getLogger("actscan.cli")
        try:
            # A normal exit leaves the temporary server to Prefect's own atexit hook, which runs
            # after its log worker has sent the last lines to it. Interrupted: flush the logs
            # (bounded), stop the server and every child process now.
            if self.interrupted or self.signum is not None or (
                    exc_type is not None and issubclass(exc_type, KeyboardInterrupt)):
                _flush_prefect_logs(timeout=5.0)
                ports = stop_temporary_servers(self._before[1])
                if ports:
                    log.info("stopped the temporary Prefect server(s) on port(s) %s", ports)
                killed = kill_new_children(self._before[0], timeout=2.0)
                if killed:
                    log.info("terminated child processes %s", killed)
        finally:
            self._done = True
            self._restore_signals()
            self._stop_logging()


def _report(exc: BaseException, command: str, log_path: Path | None) -> int:
    """Log the traceback, print the one-line error, return the exit code."""
    code = exit_code_of(exc)
    tb = "".join(traceback.format_exception(exc))
    try:
        path = log_path or new_log_path(command)
        if log_path is not None:
            logging.getLogger("actscan.cli").error("command %s failed (exit %d)", command, code, exc_info=exc)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"actscan {command} failed (exit {code})\n{tb}")
    except OSError:
        path = None
    if STATE.debug:
        sys.stderr.write(tb)
    line = error_line(exc)
    if code == EXIT_ERROR and path is not None and not STATE.debug:
        line += f" (traceback: {path})"
    typer.echo(line, err=True)
    return code


#: typer's (vendored) click exception class: usage errors raised inside a command body.
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def guard(fn: Callable[..., Any], command: str, pipeline: bool = False) -> Callable[..., Any]:
    """``fn`` wrapped so an exception becomes one ``error:`` line and a documented exit code;
    pipeline commands also run inside a :class:`PipelineSession`."""
    if getattr(fn, "__actscan_guarded__", False):
        return fn

    def call(session: PipelineSession | None, args: Any, kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except _CLICK_ERROR as exc:  # a BadParameter raised inside the command
            typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", None) or (session.signum if session else None) or signal.SIGINT
            if session is not None:
                session.interrupted = True
                logging.getLogger("actscan.cli").warning("interrupted by %s", signal.Signals(signum).name)
            typer.echo(f"error: interrupted ({signal.Signals(signum).name})", err=True)
            raise typer.Exit(128 + signum) from None
        except Exception as exc:
            raise typer.Exit(_report(exc, command, session.log_path if session else None)) from None
        except BaseException as exc:  # Prefect's TerminationSignal and the like
            if type(exc).__name__ not in ("TerminationSignal", "ExternalSignal"):
                raise
            signum = getattr(exc, "signal", None) or signal.SIGTERM
            if session is not None:
                session.interrupted = True
            typer.echo(f"error: interrupted ({signal.Signals(signum).name})", err=True)
            raise typer.Exit(128 + signum) from None

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not pipeline:
            return call(None, args, kwargs)
        session = PipelineSession(command, STATE.verbose, STATE.debug)
        with session:
            out = call(session, args, kwargs)
        if session.log_path.exists() and not STATE.verbose:  # a failure names it in its line
            typer.echo(f"log: {session.log_path}", err=True)
        return out

    run.__actscan_guarded__ = True  # type: ignore[attr-defined]
    return run


def guard_commands(target: typer.Typer = app, pipeline: set[str] | None = None) -> None:
    """Wrap every command of ``target`` (and of its sub-apps) with :func:`guard`; idempotent."""
    pipeline = PIPELINE_COMMANDS if pipeline is None else pipeline
    for info in target.registered_commands:
        if info.callback is None:
            continue
        name = info.name or info.callback.__name__.replace("_", "-")  # as typer names it
        info.callback = guard(info.callback, name, name in pipeline)
    for group in target.registered_groups:
        if group.typer_instance is not None:
            guard_commands(group.typer_instance, set())


def _register_extensions() -> None:
    """Commands defined in their own modules (each has ``register(app)``)."""
    for name in EXTENSIONS:
        try:
            module = import_module(f"actscan.{name}")
        except ModuleNotFoundError as exc:  # a module still being written: the rest still works
            if exc.name != f"actscan.{name}":
                raise
            continue
        module.register(app)
    guard_commands(app)


_register_extensions()


#: typer's (vendored) click usage error: unknown option, bad value, missing argument.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``) and return the exit code. A usage
    error (unknown option, a value not among the choices, a missing argument) is one
    ``error: ...`` line naming the command's --help, exit 2, like every other bad input."""
    try:
        rv = app(args=argv, prog_name="actscan", standalone_mode=False)
    except _USAGE_ERROR as exc:
        where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        typer.echo(f"error: {' '.join(exc.format_message().split())}{where}", err=True)
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 1
    return rv if isinstance(rv, int) else 0


def console() -> None:  # pragma: no cover - the console script (pyproject.toml)
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
