"""`bench doctor`: versions, accelerators, every weights file (present, sha256), datasets, the tracking store."""

from __future__ import annotations

from pathlib import Path

from bench.cli import main
from bench.weights_files import WEIGHTS


def _said(capsys) -> str:
    out = capsys.readouterr()
    return " ".join((out.out + " " + out.err).split())


def _doctor(capsys, *args) -> tuple[int, str]:
    code = main(["doctor", *args])
    return code, _said(capsys)


def test_doctor_reports_version_torch_every_weights_file_datasets_and_tracking(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BENCH_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv("BENCH_SEG_WEIGHTS", raising=False)
    code, out = _doctor(capsys)
    assert code == 0  # nothing was asked for: a report, not a failure
    assert "bench 0.1.0 (git " in out and "torch " in out and "CUDA" in out and "MPS" in out
    for spec in WEIGHTS:
        assert spec.file_name in out, spec.key
    assert "[missing] LPIPS AlexNet trunk (alexnet-owt-7be5be79.pth)" in out
    assert "[ok] LPIPS linear layers" in out  # shipped inside the lpips package, sha256 checked
    for name in ("toy", "horse2zebra", "cityscapes"):
        assert name in out
    assert "not created yet" in out and not (tmp_path / "mlflow.db").exists()  # reported, never created


def test_doctor_checks_the_weights_it_is_given(inception_weights, capsys):
    code, out = _doctor(capsys, "--inception-weights", str(inception_weights))
    assert code == 0
    assert f"{inception_weights} (from --inception-weights), sha256 6a6352ccfacfabdb" in out


def test_doctor_fails_on_a_wrong_file_or_what_the_user_named_and_is_missing(tmp_path, monkeypatch, capsys):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "alexnet-owt-7be5be79.pth").write_bytes(b"not the weights")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, out = _doctor(capsys)
    assert code == 1 and "[WRONG] LPIPS AlexNet trunk" in out and "does NOT match" in out
    (hub / "alexnet-owt-7be5be79.pth").unlink()
    code, out = _doctor(capsys, "--seg-weights", str(tmp_path / "drn.pth"))
    assert code == 1 and "problem: drn_d_22_cityscapes.pth: missing" in out
    code, out = _doctor(capsys, "--dataset", "horse2zebra")
    assert code == 1 and "problem: dataset horse2zebra: not found" in out
    root = tmp_path / "h2z"
    for sub in ("trainA", "trainB", "testA", "testB"):
        (root / sub).mkdir(parents=True)
    code, out = _doctor(capsys, "--dataset", "horse2zebra", "--data-root", str(root))
    assert code == 0


def test_weights_table_in_the_readme_lists_every_file():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for spec in WEIGHTS:
        assert f"`{spec.file_name}`" in readme, spec.file_name


def test_the_weights_list_reads_the_loaders_specs():
    for entry in WEIGHTS:
        if entry.spec is not None and entry.spec().filename:
            assert entry.file_name == entry.spec().filename, entry.key
