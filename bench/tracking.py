"""MLflow tracking: one run per (method, dataset, seed) with params, metrics, artifacts and tags.

Uses `mlflow.MlflowClient` with explicit run ids (never the fluent `mlflow.start_run` global state), so that a
resumed run, a nested study trial and a run in a subprocess all write to the run they name.

Schema (what `bench.train` writes and `bench.tables` / `bench.plots` read):
- experiment = dataset name; run name `<method>/<preset>/seed<N>` (+ `+<hash>` of non-default settings);
  study trials carry the tag `mlflow.parentRunId`.
- tags `bench.kind` (benchmark / study / trial / import / reproduce: every run has one), `bench.method`,
  `bench.dataset`, `bench.direction`, `bench.seed`, `bench.preset`, `bench.study`, `bench.trial`,
  `bench.git_commit`, `bench.run_dir`, `bench.config_hash`, `bench.status`
  (running/finished/failed/pruned/killed/replaced; `bench.replaced_by` names the run that replaced it),
  `bench.device` (the device used), `bench.overrides` (the non-default settings), `bench.swept` (JSON dict),
  `bench.protocol.<metric>.<field>` (short flat values; the full fingerprints are the `protocol.json` artifact),
  MLflow's context tags (`mlflow.source.name`, `mlflow.source.type`, `mlflow.user`, `mlflow.source.git.commit`);
  imported official checkpoints carry `bench.kind=import` and `bench.import.source`.
- params: the flattened resolved config (`method.<field>`, `data.<field>`, `train.<field>`, `eval.<field>`), with
  resolved values where the config holds a sentinel (`eval.n_test` = images scored, not 0).
- metrics: `train/<loss>` (step = iteration), `eval/<metric>` (step = epoch), and the summary `last/<metric>`,
  `best/<metric>`, `reverse/<metric>`, `best/epoch`, `last/epoch`, stds as `<prefix>/<metric>_std`, all at step 0
  (a summary is one number, not a point on a curve). Keys carry the unit (`kid_x100`, `swd_x1e3`, `psnr_db`,
  `miou_pct`): `metric_key` / `bench_key` convert, from the metric catalogue.
- images (`log_image`, step = epoch): `samples` (the sample grid of every evaluation), `test/<stem>` (test
  translations); artifacts: `config.json`, `metrics.json`, `protocol.json`, `test/{inputs,outputs}/<stem>.png`
  (and `test/targets/`, the ground truth, for aligned datasets).
- inputs: the dataset (`log_input`: name, root, split sizes, content digest).
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import json
import logging
import math
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError, UsageError

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

# Tag names of the schema, as constants so writers and readers cannot drift apart.
TAG_METHOD = "bench.method"
TAG_DATASET = "bench.dataset"
TAG_DIRECTION = "bench.direction"
TAG_SEED = "bench.seed"
TAG_PRESET = "bench.preset"
TAG_STUDY = "bench.study"
TAG_TRIAL = "bench.trial"
TAG_GIT_COMMIT = "bench.git_commit"
TAG_RUN_DIR = "bench.run_dir"
TAG_CONFIG_HASH = "bench.config_hash"
TAG_STATUS = "bench.status"
TAG_ERROR = "bench.error"
TAG_SWEPT = "bench.swept"
TAG_PROTOCOL_PREFIX = "bench.protocol."
TAG_PARENT = "mlflow.parentRunId"
#: What a run is, so benchmark runs can be compared without study trials or imports mixed in.
TAG_KIND = "bench.kind"
KINDS = ("benchmark", "study", "trial", "import", "reproduce")
TAG_DEVICE = "bench.device"
TAG_OVERRIDES = "bench.overrides"
#: Summary metrics (one number per run, logged at step 0) by prefix.
SUMMARY_PREFIXES = ("best", "last", "reverse")
#: The filter that shows benchmark runs only (no study trials, imports or reproductions), for the MLflow UI.
BENCHMARK_FILTER = f"tags.`{TAG_KIND}` = 'benchmark'"

# ------------------------------------------------------------------------------------------ metric keys
#: Unit of a metric in its MLflow key, from the catalogue's unit ("×100" -> kid_x100).
_UNIT_SUFFIX = {"×100": "x100", "×1e3": "x1e3", "%": "pct", "dB": "db"}


def _unit_suffix(name: str) -> tuple[str, str] | None:
    """(metric name, unit suffix) of `name` (a metric or a detail such as `kid_std`), None without a unit."""
    from bench.metrics import catalog

    try:
        metric = catalog.get(name)
    except UsageError:
        return None
    suffix = _UNIT_SUFFIX.get(metric.unit)
    return (metric.name, suffix) if suffix else None


def metric_key(name: str, prefix: str | None = None) -> str:
    """The MLflow key of a metric: its unit in the name ('kid' -> 'kid_x100', 'kid_std' -> 'kid_x100_std',
    'swd_level_16' -> 'swd_x1e3_level_16', 'fid' -> 'fid'), under `prefix/` when given."""
    found = _unit_suffix(name)
    key = name
    if found and not name.startswith(f"{found[0]}_{found[1]}"):
        key = f"{found[0]}_{found[1]}{name[len(found[0]):]}"
    return f"{prefix}/{key}" if prefix else key


def bench_key(key: str) -> str:
    """The inverse of `metric_key`: 'best/kid_x100_std' -> 'best/kid_std' (keys without a unit unchanged)."""
    prefix, slash, name = key.rpartition("/")
    found = _unit_suffix(name)
    if found and name.startswith(f"{found[0]}_{found[1]}"):
        name = found[0] + name[len(found[0]) + 1 + len(found[1]):]
    return f"{prefix}{slash}{name}"


def tracking_metrics(values: Mapping[str, float], prefix: str) -> dict[str, float]:
    """{'fid': 41.2, 'kid': 1.3} -> {'<prefix>/fid': 41.2, '<prefix>/kid_x100': 1.3}."""
    return {metric_key(k, prefix): v for k, v in values.items()}


# ------------------------------------------------------------------------------------------ context
def git_commit() -> str:
    """The commit of the bench checkout, '-dirty' when tracked files changed; 'unknown' outside git."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def source_name(argv: list[str] | None = None) -> str:
    """What started the run, as the MLflow UI's Source column shows it: 'bench run --methods cut ...'."""
    argv = list(sys.argv if argv is None else argv)
    path = Path(argv[0]) if argv else Path("python")
    head = path.parent.name if path.name == "__main__.py" else path.name  # `python -m bench.cli`: the package
    if head in ("bench", "cli") and "bench" in path.parts or head.startswith("bench"):
        return truncate(" ".join(["bench", *argv[1:]]), 500)
    return truncate(" ".join([head, *argv[1:]]), 500)


def context_tags() -> dict[str, str]:
    """MLflow's own context tags (source, user, commit), which its UI shows in the run list and page."""
    from mlflow.entities import SourceType
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = os.environ.get("USER", "unknown")
    tags = {MLFLOW_SOURCE_NAME: source_name(), MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.LOCAL),
            MLFLOW_USER: user}
    commit = git_commit()
    if commit != "unknown":
        tags[MLFLOW_GIT_COMMIT] = commit.removesuffix("-dirty")
    return tags


def protocol_tags(metric: str, fingerprint: Mapping[str, Any], limit: int = 120) -> dict[str, str]:
    """A fingerprint as short flat tags `bench.protocol.<metric>.<field>` (nested fields dotted, long values
    cut): readable in the MLflow UI; the full fingerprint goes to the `protocol.json` artifact."""
    return {f"{TAG_PROTOCOL_PREFIX}{metric}.{k}": truncate(to_text(v), limit)
            for k, v in flatten(dict(fingerprint)).items()}


def read_protocols(tags: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """{metric: fingerprint} from a run's tags: flat `bench.protocol.<metric>.<field>` tags, or the JSON blob
    `bench.protocol.<metric>` of runs logged before flat tags."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in tags.items():
        if not key.startswith(TAG_PROTOCOL_PREFIX):
            continue
        metric, dot, field_name = key[len(TAG_PROTOCOL_PREFIX):].partition(".")
        if dot:
            out.setdefault(metric, {})[field_name] = value
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = {"unparsed": value}
        out.setdefault(metric, {}).update(parsed if isinstance(parsed, dict) else {"value": parsed})
    return out


def files_digest(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
    """A content digest of image files: sha256 over (path relative to `root`, bytes), in sorted order; 16 hex."""
    h = hashlib.sha256()
    for path in sorted({str(p) for p in paths}):
        rel = os.path.relpath(path, root) if root else path
        h.update(rel.encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
# bench.status written by finish() for each MLflow terminal status (callers may override, e.g. "pruned").
_BENCH_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}

# MLflow limits (mlflow.utils.validation); fall back to the documented values if the constants move.
try:  # pragma: no cover - exercised implicitly
    from mlflow.utils.validation import (
        MAX_METRICS_PER_BATCH,
        MAX_PARAM_VAL_LENGTH,
        MAX_PARAMS_TAGS_PER_BATCH,
        MAX_TAG_VAL_LENGTH,
    )
except ImportError:  # pragma: no cover
    MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH = 6000, 8000
    MAX_PARAMS_TAGS_PER_BATCH, MAX_METRICS_PER_BATCH = 100, 1000

TRUNCATION_MARKER = "...[truncated]"


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The URI to use: the explicit one, else $MLFLOW_TRACKING_URI, else `sqlite:///mlflow.db` in the cwd."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///FILE` URI (relative paths against the cwd); None for other stores and
    in-memory databases."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path).expanduser() if path and path != ":memory:" else None


def absolute_uri(uri: str | None) -> str:
    """The resolved URI with a relative sqlite path made absolute (valid from any working directory)."""
    uri = resolve_tracking_uri(uri)
    path = sqlite_path(uri)
    return f"sqlite:///{path.resolve()}" if path is not None and not path.is_absolute() else uri


def missing_store(uri: str | None) -> Path | None:
    """The sqlite file a read-only command would open when it does not exist (opening would create an empty one)."""
    path = sqlite_path(resolve_tracking_uri(uri))
    return path.resolve() if path is not None and not path.is_file() else None


def run_name(method: str, seed: int, preset: str | None = None, overrides: Mapping[str, Any] | None = None,
             suffix: str | None = None) -> str:
    """The run name of the schema: `<method>/<preset>/seed<N>`, then `+<hash>` when settings differ from the
    preset's (the same hash for the same overrides; `bench.overrides` lists them), then `/<suffix>`."""
    name = f"{method}/{preset}/seed{int(seed)}" if preset else f"{method}/seed{int(seed)}"
    if overrides:
        name += "+" + overrides_hash(overrides)
    return name + (f"/{suffix}" if suffix else "")


def overrides_hash(overrides: Mapping[str, Any]) -> str:
    """6 hex digits naming a set of non-default settings."""
    blob = json.dumps({k: to_text(v) for k, v in overrides.items()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:6]


def to_text(value: Any) -> str:
    """A param/tag value as text: strings as they are, containers as JSON, the rest via str() like MLflow."""
    if isinstance(value, str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def truncate(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, ending in a visible marker when it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings/dataclasses to dotted keys: {"train": {"lr": 2e-4}} -> {"train.lr": 2e-4}."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if not isinstance(config, Mapping):
        return {prefix: config} if prefix else {"value": config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        is_record = dataclasses.is_dataclass(value) and not isinstance(value, type)
        if is_record or (isinstance(value, Mapping) and value):  # an empty dict stays a leaf, "{}"
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _check_server(uri: str, timeout: float = 10.0) -> None:
    """Fail fast on an unreachable tracking server instead of MLflow's minutes of retries."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - user-given http(s) URI
            if response.status != 200:
                raise UsageError(f"MLflow tracking server {uri} answered {response.status} on /health; "
                                 "check --tracking-uri / MLFLOW_TRACKING_URI")
    except (urllib.error.URLError, OSError) as exc:
        raise UsageError(f"cannot reach the MLflow tracking server {uri} ({exc}); start it or fix "
                         "--tracking-uri / MLFLOW_TRACKING_URI") from exc


# ------------------------------------------------------------------------------------------ concurrency
#: Retries of one MLflow call that found the sqlite database locked by another writer (exponential backoff
#: from LOCK_BACKOFF_S, capped at LOCK_BACKOFF_MAX_S, with jitter: about 2 minutes in all).
LOCK_RETRIES = 12
LOCK_BACKOFF_S = 0.05
LOCK_BACKOFF_MAX_S = 15.0


def is_locked_error(exc: BaseException) -> bool:
    """Whether `exc` (or its cause) is sqlite's "database is locked"/"busy": worth retrying."""
    while exc is not None:
        text = str(exc).lower()
        if "database is locked" in text or "database table is locked" in text or "database is busy" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def retry_locked(call, what: str = "MLflow call"):
    """Run `call()`, retrying with backoff while another process holds the sqlite write lock.

    A locked sqlite write is rolled back, so retrying it cannot write twice.
    """
    delay = LOCK_BACKOFF_S
    for attempt in range(LOCK_RETRIES + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == LOCK_RETRIES or not is_locked_error(exc):
                raise
            log.debug("%s: sqlite database locked, retry %d in %.2f s", what, attempt + 1, delay)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, LOCK_BACKOFF_MAX_S)
    raise AssertionError("unreachable")  # pragma: no cover


class _LockRetryingClient:
    """An MlflowClient whose every call retries on a locked sqlite database (many runs, one mlflow.db)."""

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            return retry_locked(lambda: attr(*args, **kwargs), f"MlflowClient.{name}")

        return call


@contextlib.contextmanager
def _store_lock(db: Path):
    """An exclusive lock (flock on `<db>.lock`) while one process creates or migrates the sqlite store."""
    import fcntl

    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_store(tracking_uri: str | None = None, experiments: Iterable[str] = ()):
    """Create (and migrate) the tracking store and `experiments` once, before many runs fan out.

    For sqlite, one process at a time creates the schema (MLflow's migrations are not safe to run twice at
    once: "table _alembic_tmp_experiments already exists"); every later call retries while another process
    holds the write lock. Returns the client.
    """
    client = make_client(tracking_uri)
    for name in experiments:
        get_or_create_experiment(client, name)
    return client


def _open_client(uri: str):
    from mlflow import MlflowClient

    db = sqlite_path(uri)
    if db is None:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
        return client
    with _store_lock(db):
        client = _LockRetryingClient(MlflowClient(tracking_uri=uri))
        # The file stays in sqlite's default rollback-journal mode: in WAL mode recent writes live in a
        # `-wal` file until a checkpoint, and a copy of mlflow.db alone (a backup, a colleague) lost them.
        client.search_experiments(max_results=1)  # creates and migrates the schema under the lock
    return client


def make_client(tracking_uri: str | None = None):
    """An `MlflowClient` for the resolved URI; a bad or unreachable URI is a UsageError naming it.

    For sqlite the schema is created under a file lock and every call retries while the database is locked,
    so any number of processes can share one `mlflow.db`.
    """
    uri = absolute_uri(tracking_uri)  # MLflow caches stores by URI: a relative path would follow cwd changes
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    try:
        # Touch the store now so a bad scheme or an unopenable database fails here, not mid-training.
        client = _open_client(uri)
    except BenchError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot open MLflow tracking URI {uri!r}: {exc}. Use e.g. "
                         f"--tracking-uri {DEFAULT_TRACKING_URI} or http://host:5000") from exc
    return client


def get_or_create_experiment(client, name: str) -> str:
    """The id of experiment `name`, creating (or restoring a deleted) one; safe against concurrent creators."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        # Another process created it between our lookup and create (parallel seeds / study workers).
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class Tracker:
    """One MLflow run, addressed by its id. `Tracker.disabled()` has the same interface and does nothing.

    Logging calls after `start` never raise: a tracking failure mid-training logs a warning and the training
    continues (the run folder on disk still has everything). Errors at `start` are raised.
    """

    def __init__(self, client=None, run_id: str | None = None, experiment_id: str | None = None,
                 tracking_uri: str | None = None):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.tracking_uri = tracking_uri
        self.failures = 0
        self._warned: set[str] = set()
        self._finished = False
        self._status_tag: str | None = None  # last bench.status this tracker set
        self._system_monitor = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def disabled(cls) -> "Tracker":
        """A tracker that records nothing (for --no-tracking)."""
        return cls()

    @classmethod
    def start(cls, tracking_uri: str | None = None, experiment: str = "default", run_name: str | None = None,
              run_id: str | None = None, tags: Mapping[str, Any] | None = None,
              params: Mapping[str, Any] | None = None, parent_run_id: str | None = None, *,
              kind: str | None = None, system_metrics: bool = False) -> "Tracker":
        """Start a new run in `experiment`, or resume `run_id` (same run, status back to RUNNING).

        Args:
            tracking_uri: explicit URI; None uses $MLFLOW_TRACKING_URI or `sqlite:///mlflow.db`.
            parent_run_id: makes this a nested run (study trial) under that run.
            params: logged once; on resume, existing params must keep their value (MLflow forbids changes).
            kind: the `bench.kind` tag (one of KINDS; or given in `tags`): every run says what it is, so the
                UI can show benchmark runs without study trials or imports.
            system_metrics: log MLflow's system metrics (CPU, memory, disk, GPU) while the run lasts, where
                psutil is installed (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false turns it off).
        """
        from mlflow.exceptions import MlflowException

        uri = absolute_uri(tracking_uri)
        client = make_client(uri)
        kind = kind or (tags or {}).get(TAG_KIND)
        if (kind is not None or not run_id) and kind not in KINDS:  # a resumed run keeps the kind it has
            raise UsageError(f"an MLflow run needs {TAG_KIND} (one of {', '.join(KINDS)}), got {kind!r}")
        all_tags = {**context_tags(), **{k: to_text(v) for k, v in (tags or {}).items()}}
        if kind:
            all_tags[TAG_KIND] = kind
        if parent_run_id:
            all_tags[TAG_PARENT] = parent_run_id
        all_tags[TAG_STATUS] = "running"
        all_tags.pop(TAG_ERROR, None)
        try:
            if run_id:
                try:
                    run = client.get_run(run_id)
                except MlflowException as exc:
                    raise UsageError(f"cannot resume MLflow run {run_id} at {uri}: {exc}; check the run id "
                                     "(recorded in the run folder) and --tracking-uri") from exc
                experiment_id = run.info.experiment_id
                if run.info.status != "RUNNING":
                    client.update_run(run_id, status="RUNNING")
                if run.data.tags.get(TAG_ERROR):
                    client.delete_tag(run_id, TAG_ERROR)
                tracker = cls(client, run_id, experiment_id, uri)
                tracker._log_tags_strict(all_tags)
                tracker._log_params_strict(params or {}, existing=run.data.params)
                log.info("resumed MLflow run %s (%s) at %s", run_id, run.info.run_name, uri)
                if system_metrics:
                    tracker._start_system_metrics(resume=True)
                return tracker
            experiment_id = get_or_create_experiment(client, experiment)
            run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
        except BenchError:
            raise
        except MlflowException as exc:
            raise UsageError(f"cannot start an MLflow run at {uri} (experiment {experiment!r}): {exc}") from exc
        tracker = cls(client, run.info.run_id, experiment_id, uri)
        try:
            tracker._log_params_strict(params or {}, existing={})
        except Exception:
            tracker.finish("FAILED", error="could not log params")
            raise
        log.info("MLflow run %s (%s) in experiment %r at %s", tracker.run_id, run_name, experiment, uri)
        if system_metrics:
            tracker._start_system_metrics(resume=False)
        return tracker

    def _start_system_metrics(self, resume: bool) -> None:
        """MLflow's system-metrics monitor for this run (a daemon thread), where psutil is importable."""
        if os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "").lower() in ("false", "0", "no"):
            return
        try:
            import psutil  # noqa: F401 - MLflow's CPU/memory monitors need it
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError:
            log.debug("psutil is not installed: no system metrics for run %s", self.run_id)
            return
        try:
            self._system_monitor = SystemMetricsMonitor(self.run_id, tracking_uri=self.tracking_uri,
                                                        resume_logging=resume)
            self._system_monitor.start()
        except Exception as exc:  # never a reason to stop a run
            log.warning("system metrics not logged for run %s: %s", self.run_id, exc)
            self._system_monitor = None

    def _stop_system_metrics(self) -> None:
        monitor, self._system_monitor = self._system_monitor, None
        if monitor is not None:
            try:
                monitor.finish()
            except Exception as exc:
                log.debug("stopping the system metrics of run %s: %s", self.run_id, exc)

    @property
    def enabled(self) -> bool:
        """True when this tracker writes to MLflow."""
        return self.client is not None and self.run_id is not None

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("KILLED", error="interrupted")
        else:
            self.finish("FAILED", error=f"{exc_type.__name__}: {exc}")

    # ---------------------------------------------------------------- strict helpers (used at start)
    def _log_params_strict(self, params: Mapping[str, Any], existing: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        new: list[Param] = []
        changed = []
        for key, value in params.items():
            text = truncate(to_text(value), MAX_PARAM_VAL_LENGTH)
            if key in existing:
                if existing[key] != text:
                    changed.append(f"{key}: {existing[key]!r} -> {text!r}")
                continue
            new.append(Param(key, text))
        if changed:
            shown = "; ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
            raise ConfigError(f"cannot resume MLflow run {self.run_id}: its params changed ({shown}); MLflow "
                              "params are immutable - resume with the original config or start a new run")
        for chunk in _chunks(new, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk)

    def _log_tags_strict(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, truncate(to_text(v), MAX_TAG_VAL_LENGTH)) for k, v in tags.items()]
        if TAG_STATUS in tags:
            self._status_tag = to_text(tags[TAG_STATUS])
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=chunk)

    def _guard(self, what: str, call) -> bool:
        """Run one MLflow call (a thunk); on failure warn (once per kind) and keep training."""
        if not self.enabled:
            return False
        try:
            call()
            return True
        except Exception as exc:  # a tracking outage must not kill a multi-hour run
            self.failures += 1
            level = logging.DEBUG if what in self._warned else logging.WARNING
            self._warned.add(what)
            log.log(level, "MLflow %s failed for run %s (%s: %s); training continues, the run folder keeps "
                    "the data", what, self.run_id, type(exc).__name__, exc)
            return False

    # ---------------------------------------------------------------- logging
    def log_params(self, params: Mapping[str, Any]) -> bool:
        """Log more params (truncated, chunked); a changed existing value is a warning, not a crash."""
        return self._guard("log_params", lambda: self._log_params_strict(params, self._existing_params()))

    def _existing_params(self) -> Mapping[str, str]:
        try:
            return self.client.get_run(self.run_id).data.params if self.enabled else {}
        except Exception:
            return {}

    def set_tags(self, tags: Mapping[str, Any]) -> bool:
        """Set tags; dicts/lists are stored as JSON."""
        return self._guard("set_tags", lambda: self._log_tags_strict(tags))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> bool:
        """Log scalar metrics at `step` (iteration for train/, epoch for eval/)."""
        from mlflow.entities import Metric

        if not self.enabled or not metrics:
            return False
        now = int(time.time() * 1000)
        entries = []
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                log.debug("metric %s=%r is not a number; not logged", key, value)
                continue
            if math.isnan(number):
                log.debug("metric %s is NaN at step %s", key, step)
            entries.append(Metric(key, number, now, int(step or 0)))
        ok = True
        for chunk in _chunks(entries, MAX_METRICS_PER_BATCH):
            ok &= self._guard("log_metrics", lambda: self.client.log_batch(self.run_id, metrics=chunk))
        return ok

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> bool:
        """Upload one file (into folder `artifact_path` of the run's artifacts)."""
        return self._guard("log_artifact", lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def log_artifacts(self, directory: str | os.PathLike, artifact_path: str | None = None) -> bool:
        """Upload a folder's contents (into `artifact_path`)."""
        if self.enabled and not Path(directory).is_dir():
            log.warning("artifact folder %s does not exist; nothing logged", directory)
            return False
        return self._guard("log_artifacts",
                           lambda: self.client.log_artifacts(self.run_id, str(directory), artifact_path))

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> bool:
        """Store a dict as a JSON (or YAML, by extension) artifact."""
        return self._guard("log_dict", lambda: self.client.log_dict(self.run_id, dict(data), artifact_file))

    def log_text(self, text: str, artifact_file: str) -> bool:
        """Store text (e.g. a Markdown/LaTeX table) as an artifact."""
        return self._guard("log_text", lambda: self.client.log_text(self.run_id, text, artifact_file))

    def log_figure(self, figure, artifact_file: str) -> bool:
        """Store a matplotlib figure as an image artifact."""
        return self._guard("log_figure", lambda: self.client.log_figure(self.run_id, figure, artifact_file))

    def last_steps(self, prefixes: tuple[str, ...]) -> dict[str, int]:
        """The highest step logged so far for each metric whose key starts with one of `prefixes` ({} if none)."""
        steps: dict[str, int] = {}

        def read() -> None:
            for key in self.client.get_run(self.run_id).data.metrics:
                if key.startswith(prefixes):
                    steps[key] = max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=-1)

        self._guard("get_metric_history", read)
        return steps

    def log_image(self, image, key: str, step: int = 0) -> bool:
        """An image under `key` at `step` (MLflow's stepped images: a slider on the run page, side by side in
        Compare). `image` is a PIL image, an HxWxC uint8 array or a PNG path."""
        def call():
            from PIL import Image

            img = image
            if isinstance(image, (str, os.PathLike)):
                with Image.open(image) as opened:
                    img = opened.convert("RGB")
            self.client.log_image(self.run_id, img, key=key, step=int(step), synchronous=True)

        return self._guard("log_image", call)

    def log_input(self, name: str, *, digest: str, source: str, profile: Mapping[str, Any],
                  context: str = "train") -> bool:
        """Record the dataset the run read (MLflow's Datasets column): name, digest, source folder, split sizes."""
        def call():
            from mlflow.entities import Dataset, DatasetInput, InputTag
            from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

            dataset = Dataset(name=name, digest=digest, source_type="local",
                              source=json.dumps({"uri": str(source)}), profile=json.dumps(dict(profile)))
            self.client.log_inputs(self.run_id, [DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, context)])])

        return self._guard("log_input", call)

    # ---------------------------------------------------------------- end
    def finish(self, status: str = "FINISHED", error: str | None = None, bench_status: str | None = None) -> None:
        """End the run as FINISHED/FAILED/KILLED; the error message goes to tag `bench.error`.

        `bench.status` becomes `bench_status` if given (e.g. "pruned" for a pruned trial ending KILLED), else a
        terminal value the caller already set with `set_tags` (so `set_tags({"bench.status": "pruned"})` then
        `finish("KILLED")` stays "pruned"), else the lower-case MLflow status.
        """
        status = status.upper()
        if status not in RUN_STATUSES:
            raise UsageError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        if not self.enabled or self._finished:
            return
        self._stop_system_metrics()
        preset = self._status_tag if self._status_tag not in (None, "running") else None
        tags = {TAG_STATUS: bench_status or preset or _BENCH_STATUS[status]}
        if error:
            tags[TAG_ERROR] = error
        self.set_tags(tags)
        if self._guard("set_terminated", lambda: self.client.set_terminated(self.run_id, status)):
            self._finished = True
        if self.failures:
            log.warning("%d MLflow call(s) failed during run %s; compare with the run folder", self.failures,
                        self.run_id)
