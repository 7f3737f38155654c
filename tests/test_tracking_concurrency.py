"""Many processes on one fresh sqlite store lose nothing (the store is created under a lock; a locked
database is retried): before, 3 of 4 runs started together died with "table _alembic_tmp_experiments already
exists" / "database is locked"."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest

WRITER = """
import sys
from bench.tracking import Tracker
i = int(sys.argv[1])
t = Tracker.start(tracking_uri=sys.argv[2], experiment="toy", run_name=f"cut/seed{i}", kind="benchmark",
                  tags={"bench.method": "cut", "bench.seed": str(i)}, params={"train.seed": i, "data.max_train": 8})
for step in range(40):
    t.log_metrics({"train/G": float(step), "train/D": 0.5}, step=step)
t.finish("FINISHED")
sys.exit(1 if t.failures else 0)
"""


@pytest.mark.parametrize("n", [4, pytest.param(8, marks=pytest.mark.slow)])
def test_processes_started_together_on_a_fresh_sqlite_store_lose_nothing(tmp_path, n):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(i), uri], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(n)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * n, "\n".join(o[-800:] for o in outputs)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(f"cut/seed{i}" for i in range(n))
    for r in runs:
        assert r.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(r.info.run_id, "train/G")] == list(range(40))
