"""Optuna storage for studies: a journal file (one machine) or an RDB URL (many), plus trial liveness.

Liveness: a worker that dies (SIGKILL, preemption) leaves its trial RUNNING. Two signals mark such a trial
stale so that the next worker fails it and re-queues it (RetryHeartbeatStaleTrialCallback):
- its worker was on this machine and that process no longer exists (immediate, so a killed study resumes
  at once when the same command runs again);
- its heartbeat is older than the grace period (any machine). RDB storages use Optuna's own heartbeat;
  optuna 5.0's JournalStorage has none, so journal trials beat into a sidecar folder of timestamp files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bench.errors import UsageError

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("results") / "studies"
RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite", "oracle", "mssql")
OWNER_ATTR = "bench:owner"


def default_storage(spec_name: str) -> str:
    """The default storage of a spec: a journal file `results/studies/<name>.journal` in the cwd."""
    return str(DEFAULT_DIR / f"{spec_name}.journal")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def is_rdb(url: str) -> bool:
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    return scheme in RDB_SCHEMES


def normalize_rdb_url(url: str) -> str:
    """Use an installed PostgreSQL driver: plain `postgresql://` means psycopg2 to SQLAlchemy; fall back to psycopg 3."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            return f"postgresql+psycopg://{rest}"
        return f"postgresql://{rest}"
    return url


# ------------------------------------------------------------------------------------------ owner records
def machine_id() -> str:
    """This machine (host name + kernel boot id), so a pid is only checked where it was recorded."""
    boot = ""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        pass
    return f"{socket.gethostname()}/{boot}"


def _process_start(pid: int) -> str | None:
    """Start time of process `pid` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_record(trial_number: int) -> dict[str, Any]:
    """Who runs a trial: machine, pid and its start time; the trial number guards against copied attrs."""
    pid = os.getpid()
    return {"machine": machine_id(), "pid": pid, "start": _process_start(pid), "trial": trial_number,
            "host": socket.gethostname()}


def owner_is_dead(owner: dict[str, Any] | None, trial_number: int) -> bool:
    """True when `owner` ran on this machine and its process is gone (or the pid was reused)."""
    if not owner or owner.get("trial") != trial_number or owner.get("machine") != machine_id():
        return False
    pid = int(owner.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by someone else
    start = _process_start(pid)
    if start is None:
        return False
    if owner.get("start") is not None and start != owner["start"]:
        return True
    # A killed child that its parent has not reaped yet is a zombie: dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------ storage handle
@dataclass
class StudyStorage:
    """An opened Optuna storage with the liveness rules of its kind."""

    url: str
    storage: Any
    kind: str  # "journal" | "rdb"
    heartbeat_interval: int
    grace_period: int
    on_stale: "StaleHandler"
    heartbeat_dir: Path | None = None
    _rdb: Any = None

    @property
    def display(self) -> str:
        return redact(self.url)

    def dashboard_command(self) -> str:
        """How to open this storage in optuna-dashboard."""
        if self.kind == "journal":
            return f"optuna-dashboard {self.url}"
        return f"optuna-dashboard '{redact(self.url)}'"

    def beat(self, trial_id: int) -> None:
        """Record that trial `trial_id` is alive."""
        if self.kind == "rdb":
            self._rdb.record_heartbeat(trial_id)
            return
        assert self.heartbeat_dir is not None
        self.heartbeat_dir.mkdir(parents=True, exist_ok=True)
        path = self.heartbeat_dir / str(trial_id)
        path.touch()
        os.utime(path)

    @contextlib.contextmanager
    def ask_lock(self):
        """Hold while checking the budget and creating a trial, so workers on this machine never overshoot the
        budget together (journal storage: an flock on a sidecar file). RDB storages are not locked: workers on
        several machines may start up to one trial each beyond the budget."""
        if self.kind != "journal":
            yield
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        with open(f"{self.url}.asklock", "a") as f:  # not ".lock": the journal backend uses that name
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def forget(self, trial_id: int) -> None:
        """Drop the heartbeat record of a finished trial (journal sidecar files)."""
        if self.heartbeat_dir is not None:
            (self.heartbeat_dir / str(trial_id)).unlink(missing_ok=True)

    def heartbeat_age(self, trial) -> float | None:
        """Seconds since the last heartbeat of a RUNNING journal trial (None when unknown)."""
        if self.kind != "journal":
            return None
        path = self.heartbeat_dir / str(trial._trial_id)
        try:
            return time.time() - path.stat().st_mtime
        except OSError:
            start = trial.datetime_start
            if start is None:
                return None
            if start.tzinfo is None:
                start = start.astimezone()
            return (datetime.now(timezone.utc) - start).total_seconds()

    def fail_stale(self, study) -> list[int]:
        """Fail RUNNING trials whose worker is dead, re-queue them; returns the failed trial numbers."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        failed: list[int] = []
        for trial in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
            dead = owner_is_dead(trial.user_attrs.get(OWNER_ATTR), trial.number)
            if not dead and self.kind == "journal":
                age = self.heartbeat_age(trial)
                dead = age is not None and age > self.grace_period
            if not dead:
                continue
            try:
                if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:
                continue  # another worker got there first
            log.warning("trial %d of %s: its worker is gone; marked failed and re-queued", trial.number,
                        study.study_name)
            failed.append(trial.number)
            self.forget(trial._trial_id)
            self.on_stale(study, study._storage.get_trial(trial._trial_id))
        if self.kind == "rdb":
            import optuna
            from optuna.exceptions import ExperimentalWarning

            # Heartbeats older than the grace period (other machines): Optuna's own check, same callback.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        return failed


@dataclass
class StaleHandler:
    """Called for each trial failed as stale: optional hook (close its MLflow run), then re-queue it."""

    max_retry: int
    hook: Callable[[Any, Any], None] | None = None
    retried: list[int] = field(default_factory=list)

    def __call__(self, study, trial) -> None:
        from optuna.exceptions import ExperimentalWarning
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        if self.hook is not None:
            try:
                self.hook(study, trial)
            except Exception as exc:  # closing bookkeeping must not block the retry
                log.warning("could not close the records of stale trial %d: %s", trial.number, exc)
        # Intermediate values are inherited: a retried trial resumes its runs from their checkpoints.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry, inherit_intermediate_values=True)(study, trial)
        self.retried.append(trial.number)


def open_storage(url: str, *, heartbeat_interval: int = 30, grace_period: int = 180, max_retry: int = 3,
                 create_dirs: bool = True) -> StudyStorage:
    """Open `url`: an RDB URL (postgresql://, mysql://, sqlite:///) or a journal file path (journal:PATH too)."""
    import optuna

    handler = StaleHandler(max_retry)
    if is_rdb(url):
        real = normalize_rdb_url(url)
        if real.startswith("sqlite"):
            log.warning("SQLite storage %s: fine for one process; for several workers use the journal file "
                        "(default) or PostgreSQL (Optuna FAQ: 'We would never recommend SQLite3 for parallel "
                        "optimization')", url)
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if real.startswith("sqlite"):
            engine_kwargs = {"connect_args": {"timeout": 30.0}}
        try:
            rdb = optuna.storages.RDBStorage(real, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                             grace_period=grace_period, heartbeat_stale_trial_callback=handler)
        except ModuleNotFoundError as exc:
            raise UsageError(f"storage {redact(url)}: its database driver is not installed ({exc.name}); "
                             "pip install 'i2i-bench[postgres]' (psycopg) or the driver for your database") from exc
        except Exception as exc:
            raise UsageError(f"cannot open study storage {redact(url)}: {str(exc).splitlines()[0]}; check the URL, "
                             "that the server runs and the database exists") from exc
        return StudyStorage(real, rdb, "rdb", heartbeat_interval, grace_period, handler, _rdb=rdb)
    path = Path(url[len("journal:"):] if url.startswith("journal:") else url)
    if "://" in str(url):
        raise UsageError(f"storage {redact(url)}: unknown scheme; use a journal file path or an RDB URL "
                         "(postgresql://user@host/db, mysql://..., sqlite:///file.db)")
    if path.is_dir():
        raise UsageError(f"storage {path} is a folder; give a journal file path such as {path / 'study.journal'}")
    if create_dirs:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.is_file():
        raise UsageError(f"study storage {path} does not exist; run `bench study run SPEC` first (or pass --storage)")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise UsageError(f"cannot open journal storage {path}: {exc}") from exc
    return StudyStorage(str(path), storage, "journal", heartbeat_interval, grace_period, handler,
                        heartbeat_dir=Path(str(path) + ".heartbeats"))
