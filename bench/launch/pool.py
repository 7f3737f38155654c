"""Local process pool: the runs of a matrix as separate processes over the devices of one machine.

`bench run ... --workers N [--devices 0,1 | cpu] [--runs-per-device K]`. Each run is its own process running
`bench run --methods M --seeds S ...` (the command is the first line of its log), pinned to one device with
CUDA_VISIBLE_DEVICES, at most K at a time per device and N in all; concurrent.futures threads wait on them.
The processes come from a multiprocessing fork server that imported torch, MLflow and bench once, so a run
does not pay the interpreter start and imports again (seconds of CPU each: a large share of a smoke run, and
many times that on a busy machine). The CPU cores are split between the concurrent runs (bench.threads'
BENCH_CPU_SHARE, OMP_NUM_THREADS). A failed run is reported when it ends and the others go on; Ctrl-C
interrupts every running run (each ends KILLED in MLflow, its last checkpoint kept for `--resume`) and starts
no new one; a killed pool takes its runs with it (each run watches the pool's pid and has the Linux
parent-death signal of the fork server, which exits with the pool), so `--resume` finds exactly the unfinished
ones. The tracking store is created
once before the runs fan out.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import shlex
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UsageError
from bench.launch.matrix import RunRequest
from bench.launch.procs import cpu_share, die_with_parent, worker_env

log = logging.getLogger(__name__)

CPU = "cpu"
#: Seconds an interrupted run gets to mark itself KILLED before it is killed.
INTERRUPT_GRACE_S = 60.0
#: Modules the fork server imports once for every run it starts.
PRELOAD = ("torch", "mlflow", "bench.cli", "bench.runner", "bench.train", "bench.evaluation", "methods",
           "bench.launch.pool")

_CONTEXT = None
_START_LOCK = threading.Lock()


def _context():
    """The fork-server context (created once per process, with its preloads)."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(list(PRELOAD))
    return _CONTEXT


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _release_server() -> None:
    """Close this run's copy of the fork server's "alive" pipe.

    multiprocessing gives every process the server forks the pipe's write end, and the server exits only when
    all of them are closed: a killed pool left the server, and so every running run, alive (a kill -9 of the
    pool let its runs train to the end). Without the copy the server exits with the pool, and the parent-death
    signal takes the runs with it.
    """
    from multiprocessing import forkserver

    server = forkserver._forkserver
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None


#: Seconds between a run's checks that its pool is still alive.
POOL_WATCH_S = 0.25


def _die_with_pool(pool_pid: int) -> None:
    while pid_alive(pool_pid):
        time.sleep(POOL_WATCH_S)
    os.kill(os.getpid(), signal.SIGKILL)


def _run_child(argv: list[str], env: dict[str, str], log_path: str, pool_pid: int) -> None:
    """In the forked run process: own session, die with the server, its env and log, then `bench run`."""
    os.setsid()  # a terminal Ctrl-C reaches the pool only, which interrupts each run once
    die_with_parent()
    _release_server()
    # The parent-death signal only covers a server that dies from now on: a pool killed while this process was
    # being forked (the server exits with the pool) must not leave it training on its own.
    if not pid_alive(pool_pid):
        os._exit(137)
    # The server takes seconds to exit (interpreter shutdown with torch loaded), and runs go on meanwhile:
    # each run also watches the pool itself.
    threading.Thread(target=_die_with_pool, args=(pool_pid,), name="bench-pool-watch", daemon=True).start()
    os.environ.update(env)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    from bench.cli import main

    code = main(["run", *argv])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))  # skip the fork server's atexit handlers


@dataclass(frozen=True)
class Slot:
    """One place a run can go: a device (a CUDA index, or "cpu") and its index among that device's K slots."""

    device: str
    index: int

    def env(self) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": "" if self.device == CPU else self.device}

    @property
    def run_device(self) -> str:
        """The run's --device inside the slot (its one visible GPU is cuda:0)."""
        return CPU if self.device == CPU else "cuda"


def parse_devices(text: str | None, device: str | None = None) -> list[str]:
    """`--devices`: "0,1,2" (CUDA indices) or "cpu"; default: every visible GPU, else the CPU."""
    if text:
        items = [d.strip() for d in text.replace(" ", ",").split(",") if d.strip()]
        if items == [CPU]:
            return items
        if not items or not all(d.isdigit() for d in items) or len(set(items)) != len(items):
            raise UsageError(f"--devices {text!r}: give distinct CUDA device indices (--devices 0,1) or cpu")
        return items
    if device == CPU:
        return [CPU]
    if device and device.startswith("cuda:"):
        return [device.split(":", 1)[1]]
    import torch

    if device not in (None, "auto", "cuda") or not torch.cuda.is_available():
        if device == "cuda":
            raise UsageError("--device cuda: CUDA is not available on this machine (use --devices cpu)")
        return [CPU]
    return [str(i) for i in range(torch.cuda.device_count())]


def make_slots(devices: list[str], runs_per_device: int | None, workers: int) -> list[Slot]:
    """K slots per device (default: 1 per GPU; on the CPU, one per worker), at most `workers` in all."""
    if workers < 1:
        raise UsageError(f"--workers {workers}: must be >= 1")
    k = runs_per_device or (workers if devices == [CPU] else 1)
    if k < 1:
        raise UsageError(f"--runs-per-device {k}: must be >= 1")
    slots = [Slot(d, i) for i in range(k) for d in devices]  # spread over the devices first
    return slots[:workers]


class Pool:
    """Runs requests in subprocesses on slots; `run()` returns one exit code per request, in order."""

    def __init__(self, requests: list[RunRequest], slots: list[Slot], *, on_done=None) -> None:
        self.requests, self.slots = requests, slots
        self.on_done = on_done
        self.free: queue.Queue[Slot] = queue.Queue()
        for s in slots:
            self.free.put(s)
        self.share = cpu_share(min(len(slots), len(requests)) or 1)
        self.stopping = threading.Event()
        self.running: dict[int, multiprocessing.process.BaseProcess] = {}
        self.lock = threading.Lock()

    def _one(self, i: int, request: RunRequest) -> int | None:
        slot = self.free.get()
        try:
            if self.stopping.is_set():
                return None
            request.log_path.parent.mkdir(parents=True, exist_ok=True)
            run_args = request.run_args(slot.run_device)
            env = {k: v for k, v in worker_env(self.share, **slot.env(), BENCH_LAUNCH_SLOT=str(slot.index)).items()
                   if os.environ.get(k) != v}
            with open(request.log_path, "a") as out:
                out.write(f"$ {' '.join(f'{k}={shlex.quote(v)}' for k, v in sorted(env.items()))} "
                          f"{shlex.join(['python', '-m', 'bench.cli', 'run', *run_args])}\n")
            proc = _context().Process(target=_run_child, args=(run_args, env, str(request.log_path), os.getpid()),
                                      name=f"bench-run-{request.name}")
            with _START_LOCK:
                proc.start()
            with self.lock:
                self.running[i] = proc
            log.info("started %s on %s (pid %d, %d core(s); log %s)", request.name,
                     "cpu" if slot.device == CPU else f"cuda:{slot.device}", proc.pid, self.share,
                     request.log_path)
            t0 = time.perf_counter()
            proc.join()
            code = proc.exitcode if proc.exitcode is not None else -1
            with self.lock:
                self.running.pop(i, None)
            if self.on_done is not None:
                self.on_done(request, code, time.perf_counter() - t0)
            return code
        finally:
            self.free.put(slot)

    def run(self) -> list[int | None]:
        """Run everything; on Ctrl-C interrupt the running runs, start no new one and re-raise."""
        with ThreadPoolExecutor(max_workers=len(self.slots), thread_name_prefix="bench-pool") as ex:
            futures = [ex.submit(self._one, i, r) for i, r in enumerate(self.requests)]
            try:
                return [f.result() for f in futures]
            except KeyboardInterrupt:
                self.interrupt()
                for f in futures:
                    f.cancel()
                raise

    def interrupt(self) -> None:
        """SIGINT to every running run (it marks itself KILLED and keeps its checkpoint), then wait."""
        self.stopping.set()
        with self.lock:
            procs = list(self.running.values())
        log.warning("interrupted: stopping %d running run(s); `--resume` continues them", len(procs))
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        for p in procs:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()


def _lines(path: Path) -> list[str] | None:
    try:
        return [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None


def tail(path: Path, prefix: str = "bench: error:", error_file: Path | None = None, since: float = 0.0) -> str:
    """The run's own one-line error from its log; else the last line of the traceback the run wrote to
    `error_file` (after `since`, a time.time()); else the log's last non-empty line."""
    lines = _lines(path)
    for ln in reversed(lines or []):
        if ln.startswith(prefix):
            return ln[len(prefix):].strip()
    if error_file is not None and error_file.is_file() and error_file.stat().st_mtime >= since:
        trace = _lines(error_file)
        if trace:
            return trace[-1][:300]
    if lines is None:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def run_matrix(requests: list[RunRequest], slots: list[Slot], tracking_uri: str | None = None) -> list:
    """Run the matrix on the pool; one RunResult per request (failed ones with their error), in order."""
    from bench.runner import RunResult, recorded_result
    from bench.tracking import prepare_store

    if requests:
        prepare_store(tracking_uri, sorted({r.cfg.dataset for r in requests}))  # once, before fanning out
    results: dict[str, RunResult] = {}

    def done(request: RunRequest, code: int, seconds: float) -> None:
        cfg = request.cfg
        reason = tail(request.log_path, error_file=cfg.run_dir / "error.txt", since=time.time() - seconds - 1)
        if code == 0 and (cfg.run_dir / "metrics.json").is_file():
            try:
                results[request.name] = recorded_result(cfg, seconds)
                log.info("finished %s in %.0f s", request.name, seconds)
                return
            except (OSError, ValueError, KeyError) as exc:  # an unreadable metrics.json: report, go on
                reason = f"cannot read {cfg.run_dir / 'metrics.json'}: {exc}"
        results[request.name] = RunResult(cfg.method, cfg.dataset, cfg.seed, "failed", cfg.run_dir,
                                          error=f"exit {code}: {reason}", seconds=seconds)
        log.error("%s failed (exit %d): %s (log: %s)", request.name, code, reason, request.log_path)

    Pool(requests, slots, on_done=done).run()
    return [results[r.name] for r in requests if r.name in results]
