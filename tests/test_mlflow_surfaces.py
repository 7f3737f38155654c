"""What a researcher sees in MLflow, checked through the REST API of a real `mlflow server` on 127.0.0.1.

A toy training run and a small study log to the server; the test then reads back what the UI reads: summary
metrics at step 0, images logged as stepped images, `bench.kind` on every run, context tags, the dataset input,
resolved params, flat protocol tags, units in metric keys, a run name with the preset and an overrides hash.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from test_tracking import mlflow_server  # noqa: F401 - the server fixture (a free port on 127.0.0.1)
from test_train import FAST

from bench.tracking import BENCHMARK_FILTER, KINDS, TAG_KIND, bench_key, metric_key


def _get(uri: str, endpoint: str, **query) -> dict:
    url = f"{uri}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - 127.0.0.1 only
        return json.load(r)


def _post(uri: str, endpoint: str, body: dict) -> dict:
    req = urllib.request.Request(f"{uri}/api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - 127.0.0.1 only
        return json.load(r)


def _runs(uri: str, experiment_id: str, filter_string: str = "") -> list[dict]:
    return _post(uri, "runs/search", {"experiment_ids": [experiment_id], "filter": filter_string,
                                      "max_results": 1000}).get("runs", [])


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


@pytest.fixture(scope="module")
def logged(mlflow_server, tmp_path_factory):  # noqa: F811 - the imported fixture
    """One toy CUT run and one 2-trial study, tracked on the server."""
    # Not `from conftest import ...`: with tests/attacks/conftest.py collected too, `conftest` may be that one.
    STUDY_OBJECTIVES = Path(__file__).with_name("study_objectives.py")

    from bench.runner import build_run_config, run_one
    from bench.studies.objectives import PLUGINS_ENV
    from bench.studies.run import RunOptions, finalize, open_handle, open_study, work
    from bench.studies.spec import load_spec
    from test_studies_run import write_spec

    root = tmp_path_factory.mktemp("surfaces")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse env fixtures do not apply yet
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
        mp.setenv(PLUGINS_ENV, str(STUDY_OBJECTIVES))
        cfg = build_run_config("cut", "toy", 0, "smoke", {**FAST, "lambda_NCE": "2"}, out=str(root / "runs"),
                               tracking_uri=mlflow_server, device="cpu")
        result = run_one(cfg)
        spec = load_spec(write_spec(root / "quad.yaml", seeds=[0],
                                    search_space={"x": {"type": "categorical", "choices": [0, 1]}}))
        spec = spec.with_options(storage=str(root / "quad.journal"))
        opts = RunOptions(tracking_uri=mlflow_server, results_dir=str(root / "results"))
        handle = open_handle(spec)
        study = open_study(spec, handle, opts, coordinator=True)
        work(spec, opts, handle, study)
        finalize(study, spec, opts)
    return mlflow_server, result, study


def test_every_run_says_what_it_is_and_benchmarks_filter_apart(logged):
    uri, result, study = logged
    experiment = _get(uri, "experiments/get-by-name", experiment_name="toy")["experiment"]["experiment_id"]
    runs = _runs(uri, experiment)
    kinds = {r["info"]["run_name"]: _tags(r).get(TAG_KIND) for r in runs}
    assert all(k in KINDS for k in kinds.values()), kinds
    assert sorted(kinds.values()) == ["benchmark", "study", "trial", "trial"]
    benchmark = _runs(uri, experiment, BENCHMARK_FILTER)  # the README's filter
    assert [r["info"]["run_id"] for r in benchmark] == [result.mlflow_run_id]
    for run in runs:  # MLflow's own context tags, which its run list shows
        tags = _tags(run)
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"] and tags["mlflow.source.name"]


def test_summary_metrics_sit_at_step_0_with_units_in_their_keys(logged):
    uri, result, _ = logged
    run = _get(uri, "runs/get", run_id=result.mlflow_run_id)["run"]
    keys = {m["key"] for m in run["data"]["metrics"]}
    summary = sorted(k for k in keys if k.split("/")[0] in ("best", "last", "reverse"))
    assert "best/swd_x1e3" in summary and "last/swd_x1e3" in summary and "best/epoch" in summary
    assert metric_key("kid") == "kid_x100" and bench_key("best/kid_x100_std") == "best/kid_std"
    for key in summary:
        history = _get(uri, "metrics/get-history", run_id=result.mlflow_run_id, metric_key=key)["metrics"]
        assert [m["step"] for m in history] == [0], (key, history)
    # Curves stay curves: the eval metric per epoch, the losses per iteration.
    assert [m["step"] for m in _get(uri, "metrics/get-history", run_id=result.mlflow_run_id,
                                    metric_key="eval/swd_x1e3")["metrics"]] == [1, 2]
    assert any(k.startswith("system/") for k in keys), "system metrics are on where psutil is installed"


def test_images_are_logged_as_stepped_images(logged):
    uri, result, _ = logged
    run = _get(uri, "runs/get", run_id=result.mlflow_run_id)["run"]
    assert _tags(run).get("mlflow.loggedImages", "").lower() == "true"
    files = [f["path"] for f in _get(uri, "artifacts/list", run_id=result.mlflow_run_id, path="images")["files"]]
    samples = sorted(f for f in files if f.startswith("images/samples+step+") and f.endswith(".png"))
    assert [f.split("+step+")[1].split("+")[0] for f in samples] == ["1", "2"], files  # one per evaluation
    tests = [f for f in files if f.startswith("images/test~") and f.endswith(".png")]
    assert len(tests) == 4 and all("+step+2+" in f for f in tests), files  # the 4 test translations, epoch 2


def test_params_tags_inputs_and_name_say_what_was_used(logged):
    uri, result, _ = logged
    run = _get(uri, "runs/get", run_id=result.mlflow_run_id)["run"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    tags = _tags(run)
    assert params["eval.n_test"] == "4" and params["train.eval_every"] == "1"  # resolved, not sentinels
    assert tags["bench.device"] == "cpu"
    assert run["info"]["run_name"].startswith("cut/smoke/seed0+") and "lambda_NCE=2" in tags["bench.overrides"]
    assert tags["bench.protocol.swd.n_fake"] == "4" and "bench.protocol.swd" not in tags  # short flat tags
    artifacts = {f["path"] for f in _get(uri, "artifacts/list", run_id=result.mlflow_run_id)["files"]}
    assert "protocol.json" in artifacts  # the full fingerprints
    (dataset_input,) = run["inputs"]["dataset_inputs"]
    dataset = dataset_input["dataset"]
    assert dataset["name"] == "toy:circles2squares" and len(dataset["digest"]) == 16
    assert json.loads(dataset["profile"])["test_A"] >= 4 and "uri" in json.loads(dataset["source"])


def test_study_parent_names_its_best_value_and_keeps_attributes_small(logged):
    uri, _, study = logged
    parent_id = study.user_attrs["bench:mlflow_parent_run_id"]
    parent = _get(uri, "runs/get", run_id=parent_id)["run"]
    keys = {m["key"] for m in parent["data"]["metrics"]}
    assert keys == {"best_trial/mean_last_fid"}, keys
    artifacts = {f["path"] for f in _get(uri, "artifacts/list", run_id=parent_id)["files"]}
    assert "spec.json" in artifacts
    assert study.metric_names == ["FID (last epoch, mean of 1 seed)"]  # optuna-dashboard's axis label
    for key, value in study.user_attrs.items():
        assert len(json.dumps(value)) < 1000, key
