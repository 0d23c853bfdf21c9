"""Progress: one bar redrawn in place on a terminal, nothing drawn when output is piped, and a
few milestone lines on the console while the log file keeps every line."""

from __future__ import annotations

import io

import numpy as np
import typer
from typer.testing import CliRunner

from actscan import cli
from tasks.progress import bar, milestone

runner = CliRunner()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_milestones_are_few_and_include_both_ends() -> None:
    for n in (1, 7, 10, 11, 40, 100, 1000):
        marks = [i for i in range(1, n + 1) if milestone(i, n)]
        assert marks[0] == 1 and marks[-1] == n
        assert len(marks) <= min(n, 12)
    assert [i for i in range(1, 101) if milestone(i, 100)] == [1, *range(10, 101, 10)]


def _train_tiny(monkeypatch, stream: io.StringIO) -> None:
    from tasks.models import ConvAutoencoder
    from tasks.models.training import train_autoencoder

    monkeypatch.setattr("sys.stderr", stream)
    x = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
    train_autoencoder(ConvAutoencoder(), x, None, epochs=3, batch_size=16, seed=0, progress=True)


def test_training_bar_redraws_one_line_on_a_terminal(monkeypatch) -> None:
    import functools

    import tasks.progress

    # tqdm redraws at most every 0.1 s: on a fast machine 12 tiny batches finish inside one
    # interval, so redraw on every update to make the drawing independent of speed
    monkeypatch.setattr(tasks.progress, "tqdm", functools.partial(tasks.progress.tqdm,
                                                                  mininterval=0, miniters=1))
    term = _Terminal()
    _train_tiny(monkeypatch, term)
    out = term.getvalue()
    assert out.count("\r") >= 2  # drawn, redrawn in place, cleared
    assert out.count("\n") <= 1  # one bar for every epoch, not one line per update
    assert "0/12" in out and "epoch=" in out  # 3 epochs x 4 batches in one bar


def test_nothing_is_drawn_when_stderr_is_not_a_terminal(monkeypatch) -> None:
    piped = io.StringIO()
    _train_tiny(monkeypatch, piped)
    assert piped.getvalue() == ""
    assert bar(range(3), enabled=True).disable  # the test's own stderr is captured, not a tty


def test_console_shows_milestones_and_the_log_file_every_epoch(tmp_path, monkeypatch) -> None:
    from tasks.stages.common import batch_logger, epoch_logger

    monkeypatch.setenv("ACTSCAN_HOME", str(tmp_path / "home"))
    demo = typer.Typer(add_completion=False)
    demo.callback()(cli.main_options)

    def long_loop() -> None:
        on_epoch = epoch_logger("demo", 100)
        for e in range(1, 101):
            on_epoch(e, {"train_loss": 1.0 / e})
        on_batch = batch_logger("attack demo", every=1)
        for done in range(10, 1001, 10):
            on_batch(done, 1000)

    demo.command("long-loop")(long_loop)
    cli.guard_commands(demo, pipeline={"long-loop"})
    out = runner.invoke(demo, ["long-loop"])
    assert out.exit_code == 0, out.output
    epochs = [ln for ln in out.stderr.splitlines() if "train demo: epoch" in ln]
    batches = [ln for ln in out.stderr.splitlines() if "attack demo:" in ln]
    assert 2 <= len(epochs) <= 12 and "epoch 1/100" in epochs[0] and "epoch 100/100" in epochs[-1]
    assert 2 <= len(batches) <= 12 and batches[-1].endswith("1000/1000 records")
    (log,) = (tmp_path / "home" / "logs").glob("*-long-loop-*.log")
    text = log.read_text()
    assert text.count("train demo: epoch") == 100 and text.count("attack demo:") == 100
