"""`bench import` of the official multi-net checkpoint layouts (NICE-GAN, MUNIT), built here from the official
file layout with bench's own nets, imported and scored on the toy data; and the refusal to score nets that
were not imported."""

from __future__ import annotations

import json

import pytest
import torch

import methods
from bench.cli import main
from bench.errors import CheckpointError, UsageError
from bench.importing import check_scorable, load_official_file

SCORE = ["--dataset", "toy", "--preset", "smoke", "--set", "eval.metrics=swd", "--set", "train.select_metric=swd",
         "--device", "cpu"]


def with_thop_buffers(net: torch.nn.Module) -> dict:
    """net's state dict plus what `thop.profile` leaves behind: float64 total_ops/total_params in every module."""
    sd = dict(net.state_dict())
    for name, _ in net.named_modules():
        prefix = f"{name}." if name else ""
        sd[prefix + "total_ops"] = torch.zeros(1, dtype=torch.float64)
        sd[prefix + "total_params"] = torch.zeros(1, dtype=torch.float64)
    return sd


def nicegan_params_file(tmp_path, legacy: bool = False):
    """NICE.py save(): {gen2B, gen2A, disA, disB, D_optimizer, G_optimizer, start_iter}; thop's profile() ran on
    disA and gen2B, so their state dicts carry its buffers."""
    torch.manual_seed(1)
    src = methods.build("nicegan", preset="smoke")
    src.setup(None)
    params = {"gen2B": with_thop_buffers(src.nets["gen2B"]), "gen2A": src.nets["gen2A"].state_dict(),
              "disA": with_thop_buffers(src.nets["disA"]), "disB": src.nets["disB"].state_dict(),
              "D_optimizer": src.optimizers["D"].state_dict(), "G_optimizer": src.optimizers["G"].state_dict(),
              "start_iter": 300000}
    path = tmp_path / "toy_params_latest.pt"
    torch.save(params, path, **({"_use_new_zipfile_serialization": False} if legacy else {}))
    return src, path


def munit_files(tmp_path):
    """trainer.py save(): gen_%08d.pt = {'a', 'b'}, dis_%08d.pt = {'a', 'b'}."""
    torch.manual_seed(2)
    src = methods.build("munit", preset="smoke")
    gen, dis = tmp_path / "gen_00001000.pt", tmp_path / "dis_00001000.pt"
    torch.save({"a": src.nets["gen_a"].state_dict(), "b": src.nets["gen_b"].state_dict()}, gen)
    torch.save({"a": src.nets["dis_a"].state_dict(), "b": src.nets["dis_b"].state_dict()}, dis)
    return src, gen, dis


def same_nets(a, b, names) -> bool:
    return all(torch.equal(x, y) for n in names for x, y in zip(a.nets[n].state_dict().values(),
                                                                  b.nets[n].state_dict().values()))


@pytest.mark.parametrize("legacy", [False, True])
def test_nicegan_params_file_loads_every_net_and_drops_thop_buffers(tmp_path, legacy):
    src, path = nicegan_params_file(tmp_path, legacy)
    dst = methods.build("nicegan", preset="smoke")
    assert load_official_file(dst, path) == ["gen2B", "gen2A", "disA", "disB"]
    assert same_nets(src, dst, dst.nets)
    check_scorable(dst, ["gen2B", "gen2A", "disA", "disB"], [path])
    # only the known bookkeeping is dropped: any other extra key is refused
    raw = torch.load(path, weights_only=True)
    raw["gen2A"]["surprise"] = torch.zeros(1)
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="unexpected: surprise"):
        load_official_file(methods.build("nicegan", preset="smoke"), path)


def test_munit_gen_and_dis_files_load_by_name(tmp_path):
    src, gen, dis = munit_files(tmp_path)
    dst = methods.build("munit", preset="smoke")
    assert load_official_file(dst, gen) == ["gen_a", "gen_b"] and load_official_file(dst, dis) == ["dis_a", "dis_b"]
    assert same_nets(src, dst, dst.nets)


def test_official_nicegan_and_munit_checkpoints_import_and_score(tmp_path):
    src, path = nicegan_params_file(tmp_path)
    out = tmp_path / "imp"
    assert main(["import", "nicegan", str(path), *SCORE, "--out", str(out)]) == 0
    doc = json.loads((out / "toy" / "nicegan" / "toy_params_latest" / "metrics.json").read_text())
    assert doc["nets"] == ["gen2B", "gen2A", "disA", "disB"]
    assert doc["imported"]["metrics"]["swd"]["value"] is not None
    msrc, gen, _ = munit_files(tmp_path)
    assert main(["import", "munit", str(gen), *SCORE, "--out", str(out)]) == 0
    doc = json.loads((out / "toy" / "munit" / "gen_00001000" / "metrics.json").read_text())
    assert doc["nets"] == ["gen_a", "gen_b"] and doc["imported"]["metrics"]["swd"]["value"] is not None
    # the scored translations are the source nets' translations
    saved = torch.load(out / "toy" / "munit" / "gen_00001000" / "imported.pt", weights_only=True)["method"]["nets"]
    assert all(torch.equal(saved["gen_a"][k], v) for k, v in msrc.nets["gen_a"].state_dict().items())


def test_scoring_refuses_nets_that_were_not_imported(tmp_path, capsys):
    _, gen, dis = munit_files(tmp_path)
    assert main(["import", "munit", str(dis), *SCORE, "--out", str(tmp_path / "imp")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs gen_a, gen_b" in err[0] and "also import gen_a, gen_b" in err[0]
    assert not (tmp_path / "imp" / "toy" / "munit").exists()  # refused before anything was written
    cg = methods.build("cyclegan", preset="smoke")
    only_b = tmp_path / "latest_net_G_B.pth"
    torch.save(cg.nets["netG_B"].state_dict(), only_b)
    assert main(["import", "cyclegan", str(only_b), *SCORE, "--out", str(tmp_path / "imp")]) == 2
    assert "also import netG_A" in capsys.readouterr().err
    with pytest.raises(UsageError, match="netE"):  # BicycleGAN's reconstruction score needs its encoder
        check_scorable(methods.build("bicyclegan", preset="smoke"), ["netG"], [tmp_path / "latest_net_G.pth"])
    # without --dataset nothing is scored, so one net is fine
    assert main(["import", "cyclegan", str(only_b), "--preset", "smoke", "--out", str(tmp_path / "imp")]) == 0


def test_several_single_net_files_in_one_import(tmp_path):
    cg = methods.build("cyclegan", preset="smoke")
    files = []
    for name in ("G_A", "G_B"):
        files.append(tmp_path / f"latest_net_{name}.pth")
        torch.save(cg.nets[f"net{name}"].state_dict(), files[-1])
    assert main(["import", "cyclegan", *map(str, files), *SCORE, "--out", str(tmp_path / "imp")]) == 0
    saved = torch.load(tmp_path / "imp" / "toy" / "cyclegan" / "latest_net_G_A" / "imported.pt", weights_only=True)
    assert saved["nets"] == ["netG_A", "netG_B"]
