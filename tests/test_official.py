"""bench.official: the official test loop (max(|A|,|B|) items, A wrapping around) and what each test-set rule scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.errors import UsageError
from bench.official import OFFICIAL, Protocol, fake_indices, official_loop, loop_references


def test_official_loop_wraps_around_horse2zebra():
    # horse2zebra: 120 horses, 140 zebras -> 140 iterations, horses 0..19 translated twice.
    loop = official_loop(120, 140)
    assert len(loop) == 140
    assert loop[:120] == list(range(120)) and loop[120:] == list(range(20))
    assert len(fake_indices("wraparound", 120, 140)) == 140
    assert fake_indices("per_input", 120, 140) == list(range(120))
    # Same sizes (AFHQ cat->dog 500/500, Cityscapes 500/500): nothing wraps.
    assert official_loop(500, 500) == list(range(500))
    # More inputs than targets: the loop is |A| long.
    assert official_loop(5, 3) == [0, 1, 2, 3, 4]


def test_the_official_real_b_folder_keeps_the_last_b_under_each_a_name():
    refs = loop_references(120, 140)
    assert len(refs) == 120  # one file per A name
    assert sorted(refs) == list(range(20, 140))  # zebras 0..19 were overwritten by 120..139
    assert loop_references(5, 3) == [0, 1, 2, 0, 1]  # fewer targets: some repeat


def test_official_protocol_is_last_epoch_one_fake_per_input():
    assert (OFFICIAL.epoch, OFFICIAL.test_set, OFFICIAL.reference) == ("last", "per_input", "test")
    assert OFFICIAL.record() == {"epoch_rule": "last", "test_set": "per_input", "reference_set": "test"}
    with pytest.raises(UsageError, match="use one of per_input, wraparound"):
        Protocol(test_set="wrap")


def _unaligned(root: Path, n_test_a: int, n_test_b: int) -> Path:
    from PIL import Image

    for split, n_a, n_b in (("train", 2, 2), ("test", n_test_a, n_test_b)):
        for dom, n in (("A", n_a), ("B", n_b)):
            d = root / f"{split}{dom}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (40, 40), (30 * i, 100 if dom == "A" else 200, 50)).save(d / f"{dom.lower()}{i:02d}.jpg")
    return root


def test_evaluation_writes_the_wrapped_translations_and_records_the_rule(tmp_path):
    """3 test inputs, 5 test targets: 3 per-input fakes are scored; the 2 wrap-around repeats are written beside."""
    import methods
    from bench.evaluation import Evaluator
    from bench.runner import build_run_config

    root = _unaligned(tmp_path / "h2z", 3, 5)
    cfg = build_run_config("cut", "horse2zebra", 0, "smoke", {"eval.metrics": "swd", "train.select_metric": "swd"},
                           data_root=str(root),
                           out=str(tmp_path / "runs"), device="cpu")
    method = methods.get("cut")(cfg.method_cfg, device=torch.device("cpu"))
    method.eval()
    res = Evaluator(cfg, cfg.run_dir, torch.device("cpu")).full(method, "last")
    fake_dir = Path(res["fake_dir"])
    assert sorted(p.name for p in fake_dir.glob("*.png")) == ["a00.png", "a01.png", "a02.png"]
    info = res["test_set"]
    assert info["rule"] == "per_input" and info["n_inputs"] == 3 and info["n_loop"] == 5
    assert info["wrap_files"] == ["a00__loop3.png", "a01__loop4.png"]
    wrap = Path(info["wrap_dir"])
    # CUT's generator is deterministic: the second translation of a00 equals its first.
    assert (wrap / "a00__loop3.png").read_bytes() == (fake_dir / "a00.png").read_bytes()
    fp = res["metrics"]["swd"]["fingerprint"]
    assert fp["epoch_rule"] == "last" and fp["test_set"] == "per_input" and fp["n_fake"] == 3
    assert fp["official_loop_length"] == 5 and fp["reference_set"] == "test"
    json.dumps(res)  # goes into metrics.json as it is
