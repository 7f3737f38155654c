"""bench/weights.py: the one finder, verifier and loader of weights files (importing.py, metrics/features.py and
methods/nets/vgg.py each resolved, verified and loaded weights their own way)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from bench import weights
from bench.errors import CheckpointError, UsageError

REPO = Path(__file__).resolve().parent.parent


def test_find_looks_at_the_flag_then_the_variable_then_the_hub_cache_then_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.delenv("TEST_WEIGHTS", raising=False)
    payload = b"weights" * 10
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    spec = weights.WeightsSpec("the test weights", filename=f"w-{prefix}.pth", sha256_prefix=prefix,
                               flag="--w", env="TEST_WEIGHTS")
    assert weights.find(spec) is None
    fetched = []

    def download(dst: Path) -> Path:
        fetched.append(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(payload)
        return dst

    got = weights.find(spec, download=download)
    assert got.source == "download" and fetched == [spec.cache_path] and got.sha256.startswith(prefix)
    assert weights.find(spec, download=download).source == "torch hub cache" and len(fetched) == 1
    named = tmp_path / "named.pth"
    named.write_bytes(payload)
    monkeypatch.setenv("TEST_WEIGHTS", str(named))
    assert weights.find(spec).source == "$TEST_WEIGHTS"
    assert weights.find(spec, named).source == "--w"
    with pytest.raises(UsageError, match="--w=.*missing.pth: no such file"):
        weights.find(spec, tmp_path / "missing.pth")
    other = tmp_path / "other.pth"
    other.write_bytes(b"something else")
    with pytest.raises(CheckpointError, match=f"other.pth: sha256 .* does not start with {prefix}"):
        weights.find(spec, other)


def test_load_unwraps_and_refuses_code(tmp_path):
    state = {"module.conv.weight": torch.ones(2), "module.conv.bias": torch.zeros(2)}
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": state}, path)
    assert list(weights.load_state_dict(path)) == ["conv.weight", "conv.bias"]

    class Evil:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="evil.pth: cannot load weights"):
        weights.load_state_dict(evil)
    notdict = tmp_path / "list.pth"
    torch.save([torch.ones(1)], notdict)
    with pytest.raises(CheckpointError, match="expected a state dict of tensors"):
        weights.load_state_dict(notdict)


def test_the_three_former_loaders_read_files_the_same_way(tmp_path):
    """A DataParallel-wrapped file reads the same through bench import, the FID loader and the VGG16 loader (the
    VGG16 loader did not unwrap), and torch.load is called only in bench/weights.py among them."""
    from bench.importing import read_official_state
    from bench.metrics.features import load_state
    from methods.nets import vgg

    # torchvision's keys (features.<index>.weight) from ours (relu1_1.0.weight: slice name + the same index)
    tv = {f"features.{key.split('.', 1)[1]}": value.clone() for key, value in vgg.VGG16Features().state_dict().items()}
    path = tmp_path / "vgg16-397923af.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tv.items()}}, path)
    assert read_official_state(path).keys() == load_state(path).keys() == tv.keys()
    record = vgg.load_vgg16_weights(vgg.VGG16Features(), path, sha256_prefix=weights.sha256(path)[:8])
    assert record.startswith("torchvision:vgg16-397923af sha256:")
    for rel in ("bench/importing.py", "bench/metrics/segmentation.py", "methods/nets/vgg.py"):
        assert "torch.load" not in (REPO / rel).read_text(), rel
    features = (REPO / "bench/metrics/features.py").read_text()
    assert features.count("torch.load") == 1 and "class FeatureCache" in features  # the feature cache, not weights
