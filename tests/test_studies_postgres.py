"""Studies on a real PostgreSQL server: 4 worker processes, no trial lost or run twice, heartbeat retries.

A session fixture starts a throw-away server from Debian's `postgresql` package (`.ci/postgres.sh` installs
it): initdb into a temporary folder as a non-root user, listen on 127.0.0.1 at a free port, create a
database. $BENCH_POSTGRES_URL points the tests at an existing server instead. The tests skip, with the
reason, only where neither the binaries nor that variable exist.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from bench.studies.spec import load_spec
from bench.studies.run import RunOptions, open_handle, open_study

REPO = Path(__file__).resolve().parent.parent
PG_USER = "bench"


def _bindir() -> Path | None:
    """Folder with initdb and pg_ctl: $BENCH_PG_BINDIR, Debian's /usr/lib/postgresql/<v>/bin, or PATH."""
    candidates = [os.environ.get("BENCH_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_account() -> str | None:
    """PostgreSQL refuses to run as root: as root, the unprivileged account to run the server as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "bench-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "bench-pg"], check=True)
    return "bench-pg"


def _as(account: str | None, cmd: list[str]) -> list[str]:
    if account is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", account, "--", *cmd]
    return ["su", account, "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a database on a PostgreSQL server that lives for the test session."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is the [postgres] extra: pip install 'i2i-bench[postgres]'")
    if os.environ.get("BENCH_POSTGRES_URL"):
        yield os.environ["BENCH_POSTGRES_URL"]
        return
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql "
                    "(.ci/postgres.sh) or set BENCH_PG_BINDIR / BENCH_POSTGRES_URL")
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    data, log = root / "data", root / "server.log"
    account = _server_account()
    if account:
        shutil.chown(root, account)
    os.chmod(root, 0o700)
    port = _free_port()
    subprocess.run(_as(account, [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust", "-E", "UTF8",
                             "--no-locale", "--no-sync"]), check=True, capture_output=True, timeout=180)
    opts = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    started = subprocess.run(_as(account, [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts,
                                       "-w", "-t", "120", "start"]), capture_output=True, text=True, timeout=180)
    try:
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{log.read_text() if log.exists() else ''}")
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user={PG_USER} dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE benchtest")
        yield f"postgresql://{PG_USER}@127.0.0.1:{port}/benchtest"
    finally:
        subprocess.run(_as(account, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def write_spec(path: Path, name: str, **extra) -> Path:
    raw = {"name": name, "method": "_quadratic", "dataset": "toy", "preset": "smoke",
           "overrides": {"epochs": 2, "sleep": 0.1, "marker_dir": str(path.parent / "markers")},
           "search_space": {"x": {"type": "int", "low": -2, "high": 3},
                            "mode": {"type": "variant", "variants": {"A": {"y": 1}, "B": {"y": 3}}}},
           "objective": {"metric": "fid"}, "seeds": [0], "sampler": "grid", "pruner": "none"}
    raw.update(extra)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_four_workers_on_postgres_lose_nothing_and_run_nothing_twice(tmp_path, postgres_url):
    from optuna.trial import TrialState

    name = f"pg4_{uuid.uuid4().hex[:8]}"
    path = write_spec(tmp_path / "spec.yaml", name,
                      overrides={"epochs": 2, "sleep": 0.1, "marker_dir": str(tmp_path / "markers"),
                                 "wait_for_workers": 4})
    r = subprocess.run([sys.executable, "-m", "bench.cli", "study", "run", str(path), "--workers", "4",
                        "--storage", postgres_url, "--no-tracking"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    spec = load_spec(path).with_options(storage=postgres_url)
    handle = open_handle(spec)
    assert handle.kind == "rdb" and handle.url.startswith("postgresql+psycopg://")
    import optuna

    study = optuna.load_study(study_name=spec.study_name, storage=handle.storage)
    trials = study.trials
    grid = {(x, m) for x in range(-2, 4) for m in ("A", "B")}
    assert len(trials) == len(grid) == 12, "no extra trial was created outside the queue"
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {(t.params["x"], t.params["mode"]) for t in trials} == grid, "no grid point lost"
    runs = [json.loads(p.read_text()) for p in (tmp_path / "markers").glob("*.json")]
    executed = [json.dumps(m["params"], sort_keys=True) for m in runs]
    assert len(executed) == len(set(executed)) == 12, "no grid point ran twice"
    assert len({m["pid"] for m in runs}) == 4, "all four worker processes ran trials"
    best = min(trials, key=lambda t: t.value)
    assert study.best_value == best.value and study.best_trial.number == best.number
    assert study.best_params == {"x": 1, "mode": "A"} and study.best_value == pytest.approx(0.0)
    assert (tmp_path / "results" / "studies" / spec.study_name / "table.md").is_file()


def test_postgres_stale_trials_are_failed_and_retried(tmp_path, postgres_url):
    """A dead local worker is detected at once; a silent remote one by Optuna's RDB heartbeat."""
    import optuna
    from optuna.trial import TrialState

    from bench.studies.run import _next_trial
    from bench.studies.storage import OWNER_ATTR, owner_record

    name = f"pgstale_{uuid.uuid4().hex[:8]}"
    spec = load_spec(write_spec(tmp_path / "spec.yaml", name, heartbeat_interval=1, grace_period=1)
                     ).with_options(storage=postgres_url)
    opts = RunOptions(tracking=False)
    handle = open_handle(spec)
    study = open_study(spec, handle, opts)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    t0 = _next_trial(study, spec)
    t0.set_user_attr(OWNER_ATTR, {**owner_record(t0.number), "pid": dead.pid})
    t1 = _next_trial(study, spec)
    t1.set_user_attr(OWNER_ATTR, {**owner_record(t1.number), "machine": "another-node/boot"})
    handle.beat(t1._trial_id)
    time.sleep(2.5)  # t1's heartbeat is now older than the 1 s grace period
    assert handle.fail_stale(study) == [0], "the local dead worker is found without waiting"
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[0] == TrialState.FAIL and states[1] == TrialState.FAIL, "the heartbeat-stale one too"
    retried = sorted(t.system_attrs.get("failed_trial") for t in study.get_trials(states=(TrialState.WAITING,))
                     if "failed_trial" in t.system_attrs)
    assert retried == [0, 1]
    # The study then completes with every grid point once.
    from bench.studies.run import work

    work(spec, opts, handle, study)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 12 and len({(t.params["x"], t.params["mode"]) for t in complete}) == 12
    assert isinstance(study, optuna.Study)
