"""CLI behaviour a user sees: one-line errors with exit codes, method listing, importing official checkpoints."""

from pathlib import Path

import pytest
import torch

import methods
from bench.cli import main
from bench.errors import CheckpointError
from bench.importing import load_official_into


def test_unknown_method_is_a_one_line_usage_error(capsys):
    assert main(["run", "--methods", "cutt", "--dataset", "toy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'cut'" in err[0]


def test_bad_override_names_the_key(capsys):
    assert main(["run", "--methods", "cut", "--dataset", "toy", "--set", "lambda_NCF=2"]) == 2
    assert "lambda_NCF" in capsys.readouterr().err


def test_unknown_dataset_and_direction(capsys):
    assert main(["run", "--methods", "cut", "--dataset", "afhqq"]) == 2
    assert main(["run", "--methods", "cut", "--dataset", "afhq", "--direction", "cat2horse"]) == 2
    assert "cat2horse" in capsys.readouterr().err


def test_paired_method_on_unpaired_dataset_is_refused(capsys):
    assert main(["run", "--methods", "pix2pix", "--dataset", "horse2zebra"]) == 2
    assert "paired" in capsys.readouterr().err


def test_methods_lists_every_registry_name(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in methods.names())


def test_import_official_style_checkpoint(tmp_path):
    src = methods.build("cut", preset="smoke")
    # official files are plain state dicts, DataParallel ones prefixed with "module."
    sd = {f"module.{k}": v for k, v in src.nets["netG"].state_dict().items()}
    path = tmp_path / "latest_net_G.pth"
    torch.save(sd, path)
    dst = methods.build("cut", preset="smoke")
    assert load_official_into(dst, path) == "netG"
    assert all(torch.equal(a, b) for a, b in zip(dst.nets["netG"].state_dict().values(), src.nets["netG"].state_dict().values()))
    # CycleGAN names its generators G_A / G_B in the file name
    cg = methods.build("cyclegan", preset="smoke")
    p2 = tmp_path / "latest_net_G_B.pth"
    torch.save(cg.nets["netG_B"].state_dict(), p2)
    assert load_official_into(methods.build("cyclegan", preset="smoke"), p2) == "netG_B"
    # a checkpoint of another width is rejected with the keys/shapes that differ
    wide = methods.build("cut", preset="smoke", ngf=16)
    with pytest.raises(CheckpointError, match="shape"):
        load_official_into(wide, path)


def test_import_cli_writes_a_loadable_checkpoint(tmp_path, capsys):
    src = methods.build("cut", preset="smoke")
    path = tmp_path / "latest_net_G.pth"
    torch.save(src.nets["netG"].state_dict(), path)
    assert main(["import", "cut", str(path), "--preset", "smoke", "--out", str(tmp_path / "imp")]) == 0
    assert (tmp_path / "imp" / "no-dataset" / "cut" / "latest_net_G" / "imported.pt").is_file()
    assert main(["import", "cut", str(tmp_path / "nope.pth"), "--preset", "smoke"]) == 1


def test_run_summary_groups_skips_and_unavailable_metrics(capsys):
    from bench.cli.run import _print_summary
    from bench.runner import RunResult

    ok = RunResult("cut", "horse2zebra", 0, "finished", Path("/r/cut/seed0"),
                   metrics={"last": {"fid": None, "kid": None, "epoch": 2}, "best": {"fid": None, "epoch": 2}},
                   unavailable={"fid": "real images: <run>/eval/reference has 1 image(s)"})
    _print_summary([ok], [("pix2pix", "pix2pix needs paired (aligned) data; horse2zebra is unpaired"),
                          ("bicyclegan", "bicyclegan needs paired (aligned) data; horse2zebra is unpaired")])
    out = capsys.readouterr().out
    assert "n/a" in out
    assert "FID n/a: real images: <run>/eval/reference has 1 image(s) (cut/seed0)" in out
    assert ("skipped: the method needs paired (aligned) data; horse2zebra is unpaired (pix2pix, bicyclegan)"
            in out.replace("\n", " "))
