"""Slurm through submitit: one job-array task per (method, seed), requeued on preemption or timeout.

`bench run ... --launcher slurm [--partition P --gpus-per-run 1 --timeout-min T --array-parallelism M]`
submits every run of the matrix as one task of a job array (`executor.batch()`); each task runs the same
`bench run --methods M --seeds S ...` as the local pool, in the task's process. A task is a
`submitit.helpers.Checkpointable`: when Slurm signals a preemption or the time limit, submitit asks it for
its checkpoint (the same command with `--resume`) and requeues it, and the requeued task continues from the
run's `last.pt` (bitwise the same weights as an uninterrupted run). `--status` with the same arguments shows
which runs are queued, running, finished or failed, from the jobs submitit recorded (`<folder>/runs.json`)
and the run folders.

The tracking store is created once before submitting. Many nodes writing to one sqlite file on a shared
filesystem is fragile: use an MLflow tracking server with a database backend (README, "Many machines").
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.launch.matrix import RunRequest, absolute, run_argv

try:  # the [slurm] extra; without it RunTask still has the checkpoint() submitit looks for
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover
    Checkpointable = object

log = logging.getLogger(__name__)

RECORD = "runs.json"
#: submitit/Slurm job states grouped into what `--status` shows.
QUEUED = {"PENDING", "REQUEUED", "CONFIGURING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT"}
FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
          "INTERRUPTED"}


class RunTask(Checkpointable):
    """One run as a submitit task: `bench run` for one (method, seed); requeued with `--resume`."""

    def __init__(self, argv: list[str], device: str | None = None) -> None:
        self.argv = list(argv)
        self.device = device

    def __call__(self) -> int:
        from bench.cli import main

        argv = ["run", *self.argv] + (["--device", self.device] if self.device else [])
        code = main(argv)
        if code != 0:
            raise RuntimeError(f"bench {' '.join(argv)} exited with {code} (see the task's log)")
        return code

    def checkpoint(self, *args: Any, **kwargs: Any):
        """On preemption/timeout: the same run again, continuing from its last.pt."""
        import submitit

        argv = [a for a in self.argv if a != "--restart"]  # the first attempt moved the old folder aside
        argv = argv if "--resume" in argv else [*argv, "--resume"]
        return submitit.helpers.DelayedSubmission(type(self)(argv, self.device))


def _submitit():
    try:
        import submitit
    except ImportError as exc:
        raise UsageError("--launcher slurm needs submitit: pip install 'i2i-bench[slurm]'") from exc
    return submitit


def folder_of(args) -> Path:
    return Path(args.slurm_folder or Path(args.out) / "slurm").resolve()


def executor_for(args, folder: Path):
    submitit = _submitit()
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=args.cluster)
    params: dict[str, Any] = {"name": f"bench-{args.dataset}", "timeout_min": args.timeout_min, "nodes": 1,
                              "tasks_per_node": 1, "gpus_per_node": args.gpus_per_run}
    if args.cpus_per_run:
        params["cpus_per_task"] = args.cpus_per_run
    if args.mem_gb:
        params["mem_gb"] = args.mem_gb
    if args.partition:
        params["slurm_partition"] = args.partition
    if args.array_parallelism:
        params["slurm_array_parallelism"] = args.array_parallelism
    executor.update_parameters(**params)
    return executor


def submit(args, requests: list[RunRequest]) -> list[Any]:
    """Submit every request as one task of a job array; records the jobs for `--status`. Returns the jobs."""
    from bench.tracking import prepare_store, resolve_tracking_uri, sqlite_path

    if not requests:
        return []
    args = absolute(args)  # tasks may start in another working directory
    uri = resolve_tracking_uri(args.tracking_uri)
    prepare_store(uri, sorted({r.cfg.dataset for r in requests}))
    if sqlite_path(uri) is not None and args.cluster in (None, "slurm"):
        log.warning("tracking to sqlite file %s: every node must see it and sqlite over a network filesystem "
                    "is fragile; for many nodes use an MLflow tracking server (--tracking-uri http://host:5000)",
                    sqlite_path(uri))
    folder = folder_of(args)
    executor = executor_for(args, folder)
    tasks = [RunTask(list(run_argv(args, r.cfg.method, r.cfg.seed)), args.device) for r in requests]
    with executor.batch():
        jobs = [executor.submit(t) for t in tasks]
    record = _read_record(folder)
    for r, job in zip(requests, jobs):
        record[r.name] = {"job_id": str(job.job_id), "run_dir": str(r.cfg.run_dir.resolve()),
                          "cluster": executor.cluster, "log": str(job.paths.stderr)}
    _write_record(folder, record)
    log.info("submitted %d run(s) as %s jobs %s; `--status` with the same arguments shows them", len(jobs),
             executor.cluster, ", ".join(j.job_id for j in jobs))
    return jobs


def _read_record(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / RECORD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); delete it to forget earlier submissions") from None


def _write_record(folder: Path, record: dict) -> None:
    from bench.checkpoint import atomic_write_json

    atomic_write_json(folder / RECORD, record)


def job_state(entry: dict[str, str], folder: Path) -> str:
    """The submitit/Slurm state of a recorded job ("UNKNOWN" when it cannot be told)."""
    submitit = _submitit()
    job_folder = folder / "%j"
    if entry.get("cluster") == "slurm":
        return str(submitit.SlurmJob(job_folder, entry["job_id"]).state).upper()
    job = submitit.LocalJob(job_folder, entry["job_id"])
    if _pid_alive(entry["job_id"]):
        return "RUNNING"
    if job.paths.result_pickle.exists():
        try:
            outcome, _ = __import__("pickle").loads(job.paths.result_pickle.read_bytes())
        except Exception:  # pragma: no cover - a torn result file
            return "UNKNOWN"
        return "COMPLETED" if outcome == "success" else "FAILED"
    return "UNKNOWN"


def _pid_alive(job_id: str) -> bool:
    if not job_id.isdigit():
        return False
    try:
        os.kill(int(job_id), 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def status(args, requests: list[RunRequest]) -> list[dict[str, str]]:
    """One row per run of the matrix: its job, state (queued/running/finished/failed/not submitted), detail."""
    from bench.launch.pool import tail

    folder = folder_of(args)
    record = _read_record(folder)
    rows = []
    for r in requests:
        run_dir = r.cfg.run_dir.resolve()
        entry = record.get(r.name)
        state, detail = "not submitted", ""
        if (run_dir / "metrics.json").is_file():
            state = "finished"
        elif entry:
            job = job_state(entry, folder)
            if job in QUEUED:
                state = "queued"
            elif job in RUNNING:
                state = "running"
                detail = _progress(run_dir)
            elif job in FAILED or job == "COMPLETED":  # completed without metrics.json: it failed
                state, detail = "failed", tail(Path(entry["log"]), prefix="bench: error:")
            else:
                state, detail = job.lower(), _progress(run_dir)
        rows.append({"run": r.name, "job": entry["job_id"] if entry else "", "state": state, "detail": detail})
    return rows


def _progress(run_dir: Path) -> str:
    history = run_dir / "history.json"
    try:
        entries = json.loads(history.read_text()) if history.is_file() else []
    except ValueError:
        return ""
    return f"evaluated epoch {entries[-1]['epoch']}" if entries else ""


def cmd(args, requests: list[RunRequest]) -> int:
    """`bench run --launcher slurm [--status]`."""
    if args.workers:
        raise UsageError("--workers is for the local pool; with --launcher slurm each run is its own array task "
                         "(limit them with --array-parallelism)")
    if args.status:
        from rich.console import Console
        from rich.table import Table

        rows = status(args, requests)
        table = Table(title="bench runs on Slurm")
        for col in ("run", "job", "state", "detail"):
            table.add_column(col, no_wrap=col != "detail")
        for row in rows:
            table.add_row(row["run"], row["job"], row["state"], row["detail"])
        Console().print(table)
        counts = {s: sum(r["state"] == s for r in rows) for s in dict.fromkeys(r["state"] for r in rows)}
        print(", ".join(f"{n} {s}" for s, n in counts.items()))
        return 0 if all(r["state"] == "finished" for r in rows) else 1
    from bench.launch.matrix import triage

    launch, known = triage(requests, resume=args.resume, restart=args.restart,
                           allow_thread_change=args.allow_thread_change)
    jobs = submit(args, launch)
    for r, j in zip(launch, jobs):
        print(f"{r.name}: job {j.job_id}")
    for name, result in known.items():
        print(f"{name}: {'finished (kept)' if result.ok else result.error}")
    return 0 if all(r.ok for r in known.values()) else 1
