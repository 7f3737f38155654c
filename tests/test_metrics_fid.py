"""FID: Fréchet parity with pytorch-fid, feature-pipeline parity, the real fixtures, weights, cache, protocols."""

import dataclasses
import hashlib
import http.server
import logging
import os
import re
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import CheckpointError, DownloadError, MetricUnavailable, UsageError
from bench.metrics import evaluate
from bench.metrics import features as feat
from bench.metrics import protocol as proto
from bench.metrics.fid import frechet_distance, frechet_distance_from_features, statistics
from bench.metrics.images import load_images

pytorch_fid_score = pytest.importorskip("pytorch_fid.fid_score")


def _h2z(fixtures_dir):
    root = fixtures_dir / "data" / "horse2zebra_mini"
    return root / "trainA", root / "trainB"


# ------------------------------------------------------------------------------------------ Fréchet distance
@pytest.mark.parametrize("n1,n2,d", [(60, 50, 32), (300, 400, 64), (40, 30, 256), (500, 20, 128)])
def test_frechet_matches_pytorch_fid_on_random_features(n1, n2, d):
    rng = np.random.default_rng(n1 + n2 + d)
    a = rng.normal(size=(n1, d)) * rng.uniform(0.5, 2, size=d)
    b = rng.normal(0.2, 1.3, size=(n2, d)) + a[: min(n1, n2)].mean(axis=0)
    s1, s2 = statistics(a), statistics(b)
    ref = pytorch_fid_score.calculate_frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
    # Both exact routes: from statistics (eigenvalues) and from features (nuclear norm, used for small sets).
    assert frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma) == pytest.approx(ref, abs=1e-3)
    assert frechet_distance_from_features(a, b) == pytest.approx(ref, abs=1e-3)
    assert frechet_distance_from_features(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == \
        pytest.approx(ref, rel=1e-4)


def test_frechet_of_identical_sets_is_zero_and_nan_is_never_returned():
    a = np.random.default_rng(0).normal(size=(30, 16))
    assert abs(frechet_distance_from_features(a, a)) < 1e-9
    s = statistics(a)
    assert abs(frechet_distance(s.mu, s.sigma, s.mu, s.sigma)) < 1e-9
    bad = a.copy()
    bad[3, 2] = np.nan
    with pytest.raises(MetricUnavailable, match="NaN"):
        frechet_distance_from_features(bad, a)
    with pytest.raises(MetricUnavailable, match="negative eigenvalue"):
        frechet_distance(s.mu, -np.eye(16), s.mu, s.sigma)


# ------------------------------------------------------------------------------------------ real images
def test_features_match_pytorch_fid_pipeline_on_real_images(fixtures_dir, inception_weights):
    """Fast parity: our decode + batching + network give pytorch-fid's own get_activations, image for image."""
    a, b = _h2z(fixtures_dir)
    files = sorted(a.glob("*.jpg"))[:2] + sorted(b.glob("*.jpg"))[:2]
    weights = feat.resolve_inception_weights(inception_weights)
    extractor = feat.get_extractor("inception-v3-fid", weights, proto.get_protocol("legacy_pytorch"))
    ours = feat.extract_features(extractor, load_images(files, "real"), batch_size=3)["pool3"].double().numpy()
    ref = pytorch_fid_score.get_activations(files, extractor.net, batch_size=len(files), dims=2048, device="cpu",
                                            num_workers=0)
    assert np.abs(ours - ref).max() < 1e-4


def test_fid_of_a_folder_with_itself_is_zero_and_fingerprint_is_complete(fixtures_dir, inception_weights, caplog):
    a, _ = _h2z(fixtures_dir)
    with caplog.at_level(logging.WARNING):
        r = evaluate(a, a, ("fid",), inception_weights=inception_weights, context={"direction": "AtoB"})["fid"]
    assert abs(r.value) < 1e-6
    fp = r.fingerprint
    assert fp["weights_sha256"] == hashlib.sha256(Path(inception_weights).read_bytes()).hexdigest()
    assert fp["protocol"] == "legacy_pytorch" and "bilinear" in fp["resize"]
    assert fp["n_real"] == fp["n_fake"] == 3 and fp["direction"] == "AtoB" and fp["image_format"] == "real jpg, fake jpg"
    assert fp["packages"]["pytorch-fid"] == "0.3.0" and "scipy" in fp["packages"]
    assert "2048" in fp["warning"] and "biased" in caplog.text


def test_fid_does_not_depend_on_batch_size(fixtures_dir, inception_weights):
    a, b = _h2z(fixtures_dir)
    a, b = sorted(a.glob("*.jpg"))[:2], sorted(b.glob("*.jpg"))[:2]
    kw = dict(metrics=("fid",), inception_weights=inception_weights, cache=False)
    v1 = evaluate(a, b, batch_size=1, **kw)["fid"].value
    v3 = evaluate(a, b, batch_size=2, num_workers=1, **kw)["fid"].value
    assert v1 == pytest.approx(v3, abs=1e-3)
    assert v1 > 1


def test_clean_protocol_is_selectable_and_recorded(fixtures_dir, inception_weights):
    a, b = _h2z(fixtures_dir)
    legacy = evaluate(a, b, ("fid",), inception_weights=inception_weights)["fid"]
    clean = evaluate(a, b, ("fid",), protocol="clean", inception_weights=inception_weights)["fid"]
    assert clean.fingerprint["protocol"] == "clean" and "PIL bicubic" in clean.fingerprint["resize"]
    assert clean.value != pytest.approx(legacy.value, abs=1e-3)
    assert clean.value == pytest.approx(legacy.value, rel=0.2)  # same network, only the resize differs
    with pytest.raises(UsageError, match="clean"):
        evaluate(a, b, ("fid",), protocol="cleen", inception_weights=inception_weights)


def test_clean_resize_is_pil_bicubic_on_float_per_channel():
    from PIL import Image

    x = torch.randint(0, 256, (1, 3, 40, 30), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = feat.clean_resize(x, size=17)
    assert out.shape == (1, 3, 17, 17) and out.dtype == torch.float32
    ch = Image.fromarray(x[0, 1].numpy().astype(np.float32), mode="F").resize((17, 17), resample=Image.BICUBIC)
    assert np.allclose(out[0, 1].numpy(), np.asarray(ch).clip(0, 255))
    assert float(out.min()) >= 0 and float(out.max()) <= 255


@pytest.mark.slow
def test_fid_matches_python_m_pytorch_fid_on_real_fixture_folders(fixtures_dir, inception_weights, tmp_path):
    """`python -m pytorch_fid cat dog` (its strict loader given the trunk plus a zero fc, which pool3 never uses)."""
    cat, dog = fixtures_dir / "data" / "afhq_mini" / "cat", fixtures_dir / "data" / "afhq_mini" / "dog"
    state = torch.load(inception_weights, weights_only=True)
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(state, hub / feat.INCEPTION_FILENAME)
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home")}
    out = subprocess.run([sys.executable, "-m", "pytorch_fid", str(cat), str(dog), "--device", "cpu"],
                         capture_output=True, text=True, env=env, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    ref = float(re.search(r"FID:\s+([-0-9.e]+)", out.stdout).group(1))
    ours = evaluate(cat, dog, ("fid",), inception_weights=inception_weights)["fid"].value
    assert ours == pytest.approx(ref, abs=1e-3)
    assert ours == pytest.approx(264.09, abs=0.01)  # weights/PROVENANCE.md check 3


# ------------------------------------------------------------------------------------------ cache
def test_features_are_cached_and_reused_across_calls_and_seeds(fixtures_dir, inception_weights, monkeypatch, tmp_path):
    a, b = _h2z(fixtures_dir)
    calls = []
    real_extract = feat.extract_features
    monkeypatch.setattr(feat, "extract_features",
                        lambda *args, **kw: calls.append(args[1].label) or real_extract(*args, **kw))
    first = evaluate(a, b, ("fid", "kid"), inception_weights=inception_weights, seed=0)
    assert calls == ["real", "fake"]
    files = sorted((tmp_path / "cache" / "features").glob("*.pt"))
    assert len(files) == 2
    blob = torch.load(files[0], weights_only=True)
    assert blob["features"]["pool3"].shape[1] == 2048
    second = evaluate(a, b, ("fid", "kid"), inception_weights=inception_weights, seed=1)
    assert calls == ["real", "fake"]  # nothing recomputed for another seed
    assert second["fid"].value == first["fid"].value
    # A copy of the folder under another name has the same content: still a cache hit.
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in a.iterdir():
        (copy / ("x" + p.name)).write_bytes(p.read_bytes())
    evaluate(copy, b, ("fid",), inception_weights=inception_weights)
    assert calls == ["real", "fake"]
    # Another protocol is another key; a corrupt entry is recomputed, not fatal.
    evaluate(a, b, ("fid",), inception_weights=inception_weights, protocol="clean")
    assert calls == ["real", "fake", "real", "fake"]
    for f in files:
        f.write_bytes(b"garbage")
    again = evaluate(a, b, ("fid",), inception_weights=inception_weights)
    assert calls[-2:] == ["real", "fake"] and again["fid"].value == pytest.approx(first["fid"].value, abs=1e-9)


def test_tensor_inputs_are_not_cached_by_default(fixtures_dir, inception_weights, monkeypatch, tmp_path):
    a, _ = _h2z(fixtures_dir)
    fakes = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    evaluate(a, fakes, ("fid",), inception_weights=inception_weights)
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 1  # only the folder


# ------------------------------------------------------------------------------------------ weights
def test_missing_weights_make_fid_and_kid_unavailable_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.delenv(feat.INCEPTION_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))

    def offline(dst, url=None, sha256_prefix=None):
        raise DownloadError("cannot download the FID Inception weights from https://example.invalid (URLError)")

    monkeypatch.setattr(feat, "download_inception_weights", offline)
    imgs = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    res = evaluate(imgs[:2], imgs[2:], ("fid", "kid", "swd"))
    for m in ("fid", "kid"):
        assert res[m].value is None and "--inception-weights" in res[m].unavailable
        assert res[m].to_dict()["value"] is None
    assert res["swd"].value is not None
    with pytest.raises(MetricUnavailable):
        feat.resolve_inception_weights(None, download=False)


def test_weights_resolution_order(tmp_path, monkeypatch, inception_weights):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.delenv(feat.INCEPTION_ENV, raising=False)
    with pytest.raises(UsageError, match="--inception-weights"):
        feat.resolve_inception_weights(tmp_path / "nope.pth")
    monkeypatch.setenv(feat.INCEPTION_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(UsageError, match="BENCH_INCEPTION_WEIGHTS"):
        feat.resolve_inception_weights()
    monkeypatch.setenv(feat.INCEPTION_ENV, str(inception_weights))
    assert feat.resolve_inception_weights().source == f"${feat.INCEPTION_ENV}"
    monkeypatch.delenv(feat.INCEPTION_ENV)
    hub = feat.hub_inception_path()
    assert str(hub).startswith(str(tmp_path / "th"))
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"x")
    # The hub copy's name claims its hash (pytorch-fid's download checks it): a copy that does not match is refused.
    with pytest.raises(CheckpointError, match="does not start with 6726825d"):
        feat.resolve_inception_weights(download=False)
    monkeypatch.setattr(feat, "INCEPTION", dataclasses.replace(feat.INCEPTION,
                                                               sha256_prefix=hashlib.sha256(b"x").hexdigest()[:8]))
    assert feat.resolve_inception_weights(download=False).source == "torch hub cache"


def test_download_is_verified_against_a_local_server(tmp_path):
    payload = b"pretend these are weights" * 100
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "w.pth").write_bytes(payload)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "srv"))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/w.pth"
        good = hashlib.sha256(payload).hexdigest()[:8]
        dst = feat.download_inception_weights(tmp_path / "dl" / "a.pth", url=url, sha256_prefix=good)
        assert dst.read_bytes() == payload
        with pytest.raises(DownloadError, match="cannot download"):
            feat.download_inception_weights(tmp_path / "dl" / "b.pth", url=url, sha256_prefix="00000000")
        assert not (tmp_path / "dl" / "b.pth").exists()
    finally:
        server.shutdown()


def test_wrong_weights_file_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, bad)
    w = feat.WeightsFile(bad, "0" * 64, "test")
    with pytest.raises(CheckpointError, match="not the FID Inception weights"):
        feat.InceptionFID(w, proto.get_protocol("legacy_pytorch"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pth"):
        feat.load_state(junk)


def test_weights_hash_is_remembered_by_path_mtime_size(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    calls = []
    real = proto.sha256_file
    monkeypatch.setattr(proto, "sha256_file", lambda p: calls.append(p) or real(p))
    digest = proto.weights_sha256(f)
    assert digest == hashlib.sha256(b"abc").hexdigest()
    assert proto.weights_sha256(f) == digest and len(calls) == 1
    proto._HASH_MEMO.clear()
    assert proto.weights_sha256(f) == digest and len(calls) == 1  # from the on-disk index
    f.write_bytes(b"abcd")
    assert proto.weights_sha256(f) == hashlib.sha256(b"abcd").hexdigest() and len(calls) == 2
