"""Shared test fixtures. Real assets come from $BENCH_FIXTURES (the shared/ folder); tests that need them
skip with a reason when it is unset. Nothing here reaches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Smoke-sized nets are dominated by per-op overhead: one intra-op thread is faster and immune to
# oversubscription when the machine is shared (two threads were 7-20x slower under load).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared test assets folder ($BENCH_FIXTURES), e.g. ../shared."""
    root = os.environ.get("BENCH_FIXTURES")
    if not root:
        pytest.skip("BENCH_FIXTURES is not set (point it at the shared/ test assets)")
    path = Path(root)
    if not (path / "data").is_dir():
        pytest.skip(f"BENCH_FIXTURES={root} has no data/ folder")
    return path


@pytest.fixture(scope="session")
def inception_weights(fixtures_dir) -> Path:
    """The offline FID Inception pool3 trunk (no fc layer)."""
    path = fixtures_dir / "weights" / "pt_inception-2015-12-05-nofc.pth"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Keep caches, MLflow databases and run folders of a test inside its tmp dir."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No Inception weights anywhere and no network: FID is n/a, as on a fresh offline machine."""
    from bench.errors import DownloadError
    from bench.metrics import features

    monkeypatch.delenv("BENCH_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(dst, url=None, sha256_prefix=None):
        raise DownloadError("cannot download the FID Inception weights (no network)")

    monkeypatch.setattr(features, "download_inception_weights", no_network)
    monkeypatch.setattr(features, "_FAILED_DOWNLOADS", {})


#: The study tests' objective (`_quadratic`, no training), registered through the study runner's plugin hook.
STUDY_OBJECTIVES = Path(__file__).with_name("study_objectives.py")


@pytest.fixture(autouse=True)
def _study_objectives(monkeypatch):
    """Studies in this process and their worker subprocesses load tests/study_objectives.py."""
    from bench.studies.objectives import PLUGINS_ENV

    monkeypatch.setenv(PLUGINS_ENV, str(STUDY_OBJECTIVES))
