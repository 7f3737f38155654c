"""bench.tracking against a real MLflow: sqlite in the tmp dir and an `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.errors import ConfigError, UsageError
from bench.tracking import (
    DEFAULT_TRACKING_URI,
    MAX_PARAM_VAL_LENGTH,
    TRUNCATION_MARKER,
    Tracker,
    flatten,
    make_client,
    resolve_tracking_uri,
    run_name,
)


@pytest.fixture
def sqlite_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on a free local port with its own sqlite store and artifact folder."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    if not mlflow_bin.exists():
        pytest.skip(f"{mlflow_bin} is not installed")
    cmd = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
           "--artifacts-destination", str(root / "artifacts")]
    log_file = open(root / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=root,
                            env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.skip(f"mlflow server exited with {proc.returncode}: "
                            f"{(root / 'server.log').read_text()[-500:]}")
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.skip("mlflow server did not become healthy within 120 s")
            time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()


def _schema_run(uri: str, **overrides) -> Tracker:
    tags = {"bench.method": "cut", "bench.dataset": "toy", "bench.seed": 0, "bench.preset": "smoke",
            "bench.direction": "AtoB", "bench.protocol.fid": {"impl": "bench", "n_fake": 8}}
    params = {"method.lambda_NCE": 1.0, "train.n_epochs": 2, "data.name": "toy"}
    kwargs = dict(tracking_uri=uri, experiment="toy", run_name=run_name("cut", 0), tags=tags, params=params,
                  kind="benchmark")
    kwargs.update(overrides)
    return Tracker.start(**kwargs)


def _exercise(uri: str, tmp_path: Path) -> None:
    t = _schema_run(uri)
    for it in range(3):
        t.log_metrics({"train/G": 1.0 / (it + 1), "train/D": 0.5}, step=it)
    t.log_metrics({"eval/fid": 120.5}, step=1)
    (tmp_path / "config.json").write_text('{"a": 1}')
    t.log_artifact(tmp_path / "config.json")
    t.log_dict({"last": {"fid": 99.0}}, "metrics.json")
    t.log_text("| a |\n|---|\n| 1 |\n", "table.md")
    t.finish("FINISHED")

    client = make_client(uri)
    run = client.get_run(t.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "cut/seed0"
    assert client.get_experiment(run.info.experiment_id).name == "toy"
    assert run.data.tags["bench.status"] == "finished"
    assert run.data.tags["bench.seed"] == "0"
    assert run.data.tags["bench.protocol.fid"] == '{"impl": "bench", "n_fake": 8}'
    assert run.data.params["method.lambda_NCE"] == "1.0"
    history = client.get_metric_history(t.run_id, "train/G")
    assert [m.step for m in history] == [0, 1, 2]
    assert history[-1].value == pytest.approx(1 / 3)
    names = {a.path for a in client.list_artifacts(t.run_id)}
    assert {"config.json", "metrics.json", "table.md"} <= names


def test_sqlite_run_records_schema(sqlite_uri, tmp_path):
    _exercise(sqlite_uri, tmp_path)


def test_tracking_server_records_schema(mlflow_server, tmp_path):
    _exercise(mlflow_server, tmp_path)


@pytest.mark.slow  # ~20 s: a fresh interpreter importing mlflow
def test_resume_in_subprocess_against_server(mlflow_server, tmp_path):
    """A resumed run (another process, as after a kill) continues the same MLflow run on a server."""
    t = _schema_run(mlflow_server, run_name="cut/seed1")
    t.log_metrics({"eval/fid": 150.0}, step=1)  # then "killed": no finish()
    code = (
        "from bench.tracking import Tracker\n"
        f"t = Tracker.start(tracking_uri={mlflow_server!r}, run_id={t.run_id!r},"
        " params={'method.lambda_NCE': 1.0, 'train.resume': True})\n"
        "t.log_metrics({'eval/fid': 140.0}, step=2)\n"
        "t.finish('FINISHED')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    client = make_client(mlflow_server)
    run = client.get_run(t.run_id)
    assert run.info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(t.run_id, "eval/fid")] == [150.0, 140.0]
    assert run.data.params["train.resume"] == "True"
    assert len(client.search_runs([t.experiment_id], "attributes.run_name = 'cut/seed1'")) == 1


def test_resume_continues_same_run_and_rejects_changed_params(sqlite_uri):
    t = _schema_run(sqlite_uri)
    t.log_metrics({"eval/fid": 200.0}, step=1)
    t.finish("KILLED", error="interrupted")
    again = Tracker.start(tracking_uri=sqlite_uri, run_id=t.run_id, params={"method.lambda_NCE": 1.0})
    assert again.run_id == t.run_id
    client = make_client(sqlite_uri)
    run = client.get_run(t.run_id)
    assert run.info.status == "RUNNING"
    assert run.data.tags["bench.status"] == "running"
    assert "bench.error" not in run.data.tags
    again.log_metrics({"eval/fid": 180.0}, step=2)
    again.finish()
    assert [m.step for m in client.get_metric_history(t.run_id, "eval/fid")] == [1, 2]
    assert len(client.search_runs([t.experiment_id])) == 1
    with pytest.raises(ConfigError, match="method.lambda_NCE"):
        Tracker.start(tracking_uri=sqlite_uri, run_id=t.run_id, params={"method.lambda_NCE": 2.0})
    with pytest.raises(UsageError, match="cannot resume"):
        Tracker.start(tracking_uri=sqlite_uri, run_id="0" * 32)


def test_failed_run_ends_failed_with_error_tag(sqlite_uri):
    with pytest.raises(RuntimeError):
        with _schema_run(sqlite_uri) as t:
            raise RuntimeError("generator exploded")
    run = make_client(sqlite_uri).get_run(t.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["bench.status"] == "failed"
    assert run.data.tags["bench.error"] == "RuntimeError: generator exploded"


def test_pruned_trial_is_nested_and_labelled(sqlite_uri):
    parent = Tracker.start(tracking_uri=sqlite_uri, experiment="toy", run_name="study/qs", kind="study")
    child = _schema_run(sqlite_uri, parent_run_id=parent.run_id, run_name="qsattn/seed0")
    child.finish("KILLED", bench_status="pruned")
    run = make_client(sqlite_uri).get_run(child.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id
    assert run.data.tags["bench.status"] == "pruned"
    assert run.info.status == "KILLED"
    # A status set by the caller before finish() is kept (the runner tags "pruned", then ends KILLED).
    other = _schema_run(sqlite_uri, parent_run_id=parent.run_id, run_name="qsattn/seed1")
    other.set_tags({"bench.status": "pruned"})
    other.finish("KILLED", error="pruned by the study's pruner")
    assert make_client(sqlite_uri).get_run(other.run_id).data.tags["bench.status"] == "pruned"


def test_long_and_many_params(sqlite_uri):
    params = {f"method.p{i:03d}": i for i in range(250)}  # > 100 per log_batch call
    params["data.long"] = "x" * (MAX_PARAM_VAL_LENGTH + 50)
    t = Tracker.start(tracking_uri=sqlite_uri, experiment="toy", run_name="big/seed0", params=params,
                      kind="benchmark")
    stored = make_client(sqlite_uri).get_run(t.run_id).data.params
    assert len(stored) == 251
    assert stored["method.p249"] == "249"
    assert len(stored["data.long"]) == MAX_PARAM_VAL_LENGTH
    assert stored["data.long"].endswith(TRUNCATION_MARKER)
    # Same (truncated) value on resume is not a change.
    Tracker.start(tracking_uri=sqlite_uri, run_id=t.run_id, params=params).finish()


def test_logging_failure_warns_and_continues(sqlite_uri, caplog):
    t = _schema_run(sqlite_uri)

    def broken(*args, **kwargs):
        raise ConnectionError("server went away")

    t.client.log_batch = broken
    with caplog.at_level("WARNING", logger="bench.tracking"):
        assert t.log_metrics({"train/G": 1.0}, step=0) is False
        assert t.log_metrics({"train/G": 1.0}, step=1) is False
    assert t.failures == 2
    assert sum("server went away" in r.getMessage() for r in caplog.records) == 1  # warned once per kind


def test_disabled_tracker_is_a_no_op(tmp_path):
    t = Tracker.disabled()
    assert not t.enabled and t.run_id is None
    assert t.log_metrics({"train/G": 1.0}, step=0) is False
    assert t.log_artifact(tmp_path / "missing.png") is False
    t.set_tags({"a": 1})
    t.finish("FAILED", error="x")
    assert not (tmp_path / "mlflow.db").exists()


def test_uri_resolution_and_bad_uri(monkeypatch):
    assert resolve_tracking_uri() == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri() == "sqlite:///env.db"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(UsageError, match="cannot reach"):
        Tracker.start(tracking_uri=f"http://127.0.0.1:{_free_port()}", experiment="toy")
    with pytest.raises(UsageError, match="nosuchscheme"):
        Tracker.start(tracking_uri="nosuchscheme://foo", experiment="toy")


def test_default_uri_is_sqlite_in_cwd(tmp_path):
    t = Tracker.start(experiment="toy", run_name="cut/seed0", kind="benchmark")
    t.finish()
    assert (tmp_path / "mlflow.db").is_file()
    assert not (tmp_path / "mlruns").exists() or not any((tmp_path / "mlruns").glob("*/meta.yaml"))


def test_flatten_config():
    @dataclass(frozen=True)
    class Train:
        lr: float = 2e-4
        betas: tuple = (0.5, 0.999)

    flat = flatten({"train": Train(), "method": {"name": "cut", "nce_layers": [0, 4]}, "eval": {}})
    assert flat == {"train.lr": 2e-4, "train.betas": (0.5, 0.999), "method.name": "cut",
                    "method.nce_layers": [0, 4], "eval": {}}
