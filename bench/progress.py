"""Progress of training runs: a rich bar on a terminal, plain lines in a log file.

    with Reporter(total_runs=len(plan)) as reporter:
        for cfg in plan:
            handle = reporter.run(f"{cfg.method}/seed{cfg.seed}")
            run_one(cfg, progress=handle)   # the loop calls handle.start / update / phase; the runner done

On a terminal (stdout is a TTY) each run has a bar that updates every iteration and keeps its name when
finished: `cut/smoke/seed0  run 3/6  ep 2/2  ━━━━  40/40  1.2 s/it  0:48  0:00  G_GAN=0.51 NCE=2.1`, and shows
the phase ("evaluating epoch 2 ...") while the run is not training. Elsewhere (stdout sent to a file, a Slurm log)
a plain line is written every `interval` seconds (default 30, $BENCH_PROGRESS_INTERVAL or --progress-interval)
from a timer thread, so a slow iteration or a long evaluation still leaves a line, plus one line per phase and
one when the run ends:

    2026-01-01 12:00:30 [run 3/6] cut/smoke/seed0 epoch 2/2 iteration 20/40 (50%) 1.2 s/it elapsed 0:24 ETA 0:24 G_GAN=0.51
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Mapping

from bench.formatting import duration, losses as format_losses, rate

DEFAULT_INTERVAL = 30.0
INTERVAL_ENV = "BENCH_PROGRESS_INTERVAL"


def default_interval() -> float:
    """Seconds between plain progress lines: $BENCH_PROGRESS_INTERVAL, else 30."""
    try:
        return max(0.1, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def is_tty(stream: IO | None = None) -> bool:
    stream = stream or sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@dataclass
class _State:
    """What one run is doing, as the loop last said."""

    name: str
    index: int
    count: int | None
    total: int = 0
    completed: int = 0
    start_completed: int = 0
    epoch: int = 0
    epochs: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    phase: str | None = None
    phase_since: float = 0.0
    started: float = field(default_factory=time.monotonic)
    status: str | None = None

    def seconds_per_iteration(self, now: float) -> float | None:
        done = self.completed - self.start_completed
        return (now - self.started) / done if done > 0 else None

    def eta(self, now: float) -> float | None:
        spi = self.seconds_per_iteration(now)
        return None if spi is None else spi * max(0, self.total - self.completed)

    def line(self, now: float) -> str:
        """The plain progress line (without the timestamp)."""
        head = f"[run {self.index}/{self.count}] " if self.count else ""
        text = f"{head}{self.name}"
        if self.status:
            spi = self.seconds_per_iteration(now)
            return (f"{text} {self.status} after {duration(now - self.started)} ({self.completed}/{self.total} "
                    f"iterations{', ' + rate(spi) if spi else ''})")
        pct = f" ({100.0 * self.completed / self.total:.0f}%)" if self.total else ""
        text += f" epoch {self.epoch}/{self.epochs} iteration {self.completed}/{self.total}{pct}"
        spi = self.seconds_per_iteration(now)
        if spi:
            text += f" {rate(spi)} elapsed {duration(now - self.started)} ETA {duration(self.eta(now))}"
        else:
            text += f" elapsed {duration(now - self.started)}"
        if self.phase:
            return f"{text} | {self.phase} ({duration(now - self.phase_since)})"
        return f"{text} {format_losses(self.losses)}" if self.losses else text


class RunProgress:
    """The handle of one run: the training loop reports to it; the reporter shows it."""

    def __init__(self, reporter: "Reporter", state: _State) -> None:
        self._reporter, self.state = reporter, state

    def set_name(self, name: str) -> None:
        """The run's full name (e.g. the MLflow run name), once known."""
        with self._reporter.lock:
            self.state.name = name
        self._reporter._refresh(self)

    def start(self, *, total: int, completed: int = 0, epochs: int = 0, epoch: int = 1) -> None:
        with self._reporter.lock:
            st = self.state
            st.total, st.completed, st.start_completed, st.epochs, st.epoch = total, completed, completed, epochs, epoch
            st.started = time.monotonic()
        self._reporter._started(self)

    def update(self, *, completed: int, epoch: int, losses: Mapping[str, float] | None = None) -> None:
        """Called every iteration (cheap: the display decides what to show)."""
        with self._reporter.lock:
            self.state.completed, self.state.epoch = completed, epoch
            if losses:
                self.state.losses = {k: float(v) for k, v in losses.items()}
            if self.state.phase is not None:
                self.state.phase = None
        self._reporter._refresh(self)

    def phase(self, text: str | None) -> None:
        """What the run does besides training ("evaluating epoch 3 ...", "final evaluation ..."); None = training."""
        with self._reporter.lock:
            self.state.phase, self.state.phase_since = text, time.monotonic()
        self._reporter._phase(self)

    def done(self, status: str = "finished") -> None:
        with self._reporter.lock:
            if self.state.status:
                return
            self.state.status, self.state.phase = status, None
        self._reporter._done(self)


class Reporter:
    """Shows the progress of a sequence of runs (run k of N) on a terminal or as plain lines."""

    def __init__(self, total_runs: int | None = None, *, tty: bool | None = None, interval: float | None = None,
                 stream: IO | None = None) -> None:
        self.total_runs = total_runs
        self.stream = stream or sys.stdout
        self.tty = is_tty(self.stream) if tty is None else tty
        self.interval = default_interval() if interval is None else max(0.1, float(interval))
        self.lock = threading.RLock()
        self._count = 0
        self._active: RunProgress | None = None
        self._last_line = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rich = None
        self._tasks: dict[int, int] = {}

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> "Reporter":
        if self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._rich = Progress(TextColumn("[bold]{task.fields[name]}"), TextColumn("{task.fields[of]}"),
                                  TextColumn("ep {task.fields[epoch]}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                  _RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                  TextColumn("{task.fields[info]}"), console=Console(file=self.stream),
                                  speed_estimate_period=300.0, transient=False)
            self._rich.__enter__()
        else:
            self._thread = threading.Thread(target=self._tick, daemon=True, name="bench-progress")
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def run(self, name: str) -> RunProgress:
        """The handle of the next run."""
        with self.lock:
            self._count += 1
            return RunProgress(self, _State(name=name, index=self._count, count=self.total_runs))

    # ---------------------------------------------------------------- events from a run
    def _started(self, handle: RunProgress) -> None:
        with self.lock:
            self._active = handle
        if self._rich is not None:
            st = handle.state
            self._tasks[id(handle)] = self._rich.add_task(
                st.name, total=st.total or None, completed=st.completed, name=st.name, of=self._of(st),
                epoch=f"{st.epoch}/{st.epochs}", info="", spi=None)
        else:
            self._emit(handle)

    def _refresh(self, handle: RunProgress) -> None:
        if self._rich is None or id(handle) not in self._tasks:
            return
        st = handle.state
        info = f"[cyan]{st.phase}" if st.phase else format_losses(st.losses)
        self._rich.update(self._tasks[id(handle)], completed=st.completed, name=st.name,
                          epoch=f"{st.epoch}/{st.epochs}", info=info)

    def _phase(self, handle: RunProgress) -> None:
        if self._rich is not None:
            self._refresh(handle)
        elif handle.state.phase:
            self._emit(handle)

    def _done(self, handle: RunProgress) -> None:
        if self._rich is not None:
            task = self._tasks.get(id(handle))
            if task is not None:
                st = handle.state
                self._rich.update(task, completed=st.total if st.status == "finished" else st.completed,
                                  info=st.status if st.status != "finished" else format_losses(st.losses))
                self._rich.stop_task(task)
        else:
            self._emit(handle)
        with self.lock:
            if self._active is handle:
                self._active = None

    @staticmethod
    def _of(st: _State) -> str:
        return f"run {st.index}/{st.count}" if st.count else ""

    # ---------------------------------------------------------------- plain lines
    def _emit(self, handle: RunProgress) -> None:
        with self.lock:
            now = time.monotonic()
            line = handle.state.line(now)
            self._last_line = now
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            print(f"{stamp} {line}", file=self.stream, flush=True)
        except ValueError:  # the stream was closed under us (interpreter shutdown)
            pass

    def _tick(self) -> None:
        """Timer thread: a line for the active run whenever `interval` seconds passed without one."""
        while not self._stop.wait(min(1.0, self.interval / 4)):
            with self.lock:
                handle = self._active
                due = handle is not None and time.monotonic() - self._last_line >= self.interval
            if due:
                self._emit(handle)


try:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class _RateColumn(ProgressColumn):
        """Speed the readable way round: it/s when fast, s/it when slow (never '0.0 it/s')."""

        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(rate(1.0 / speed) if speed else "-- s/it", style="progress.data.speed")
except ImportError:  # pragma: no cover - rich is a dependency
    _RateColumn = None  # type: ignore[assignment]
