"""Opt-in compute switches (train.precision / channels_last / compile / tf32): they work on CPU, every method
routes its backward and steps through the GradScaler, and a non-default switch is recorded and footnoted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pytest
import torch

import methods
from bench.checkpoint import load_checkpoint
from bench.config import TrainConfig
from bench.errors import ConfigError
from bench.precision import Amp, backward, compute_record, configure_tf32, optimizer_step, prepare_nets
from bench.runner import build_run_config, run_one
from test_methods_contract import NAMES, make_batch

FAST = {"data.max_train": "4", "train.eval_n": "2", "eval.n_test": "2", "eval.metrics": "swd",
        "train.select_metric": "swd", "train.progress": "false", "n_epochs": "1", "n_epochs_decay": "0"}


def _run(tmp_path, out, method="cut", **extra):
    cfg = build_run_config(method, "toy", 0, "smoke", {**FAST, **extra}, out=str(tmp_path / out),
                           tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = run_one(cfg)
    assert result.status == "finished"
    return cfg, result


def _fingerprint(cfg):
    return json.loads((cfg.run_dir / "metrics.json").read_text())["last"]["metrics"]["swd"]["fingerprint"]


def _nets(cfg):
    return load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["method"]["nets"]


def test_defaults_are_the_papers_fp32_eager_deterministic():
    t = TrainConfig()
    assert (t.precision, t.channels_last, t.compile, t.tf32, t.deterministic, t.num_workers) == \
        ("fp32", False, False, False, True, 0)
    with pytest.raises(ConfigError, match="train.precision='fp8'"):
        TrainConfig(precision="fp8")


def test_no_method_calls_backward_or_step_directly():
    """Under fp16 the loss must be scaled and the step unscaled: only methods.base's helpers know how."""
    root = Path(methods.__file__).parent
    call = re.compile(r"\.backward\(|\b(opt|optimizer|o|self\.optimizers\[[^]]+\]|opt\[[^]]+\])\.step\(")
    direct = [f"{p.relative_to(root)}:{i}" for p in sorted(root.rglob("*.py"))
              for i, line in enumerate(p.read_text().splitlines(), 1)
              if call.search(re.sub(r"`[^`]*`", "", line)) and not line.lstrip().startswith("#")]
    assert not direct, direct


@pytest.mark.parametrize("name", NAMES)
def test_every_method_trains_under_fp16_with_a_grad_scaler(name):
    torch.manual_seed(0)
    m = methods.build(name, preset="smoke", **({"allow_random_vgg": True} if name in ("fsesim", "lsesim") else {}))
    batch = make_batch(m)
    m.setup(batch)
    m.train()
    amp = Amp("fp16", m.device)
    amp.guard(m.optimizers.values())
    with amp.train_step():
        losses = m.train_step(batch)
    assert amp.backwards >= 1 and amp.steps >= 1
    assert all(torch.isfinite(v).all() for v in losses.values()), losses
    assert amp.state_dict()["scale"] > 0


def test_a_direct_step_under_fp16_is_an_error():
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    amp = Amp("fp16", "cpu")
    amp.guard([opt])
    with amp.train_step():
        backward(net(torch.ones(1, 2)).sum())
        optimizer_step(opt)  # through the scaler: fine
        with pytest.raises(RuntimeError, match="called directly"):
            opt.step()


def test_bf16_autocast_runs_on_cpu_and_is_recorded_and_footnoted(tmp_path):
    seen = []
    from methods.cut import CUT

    original = CUT.train_step

    def spy(self, batch):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return original(self, batch)

    CUT.train_step = spy
    try:
        bf16, r = _run(tmp_path, "bf16", **{"train.precision": "bf16"})
    finally:
        CUT.train_step = original
    assert seen and all(s == (True, torch.bfloat16) for s in seen)
    fp32, _ = _run(tmp_path, "fp32")
    assert any(not torch.equal(a, b) for net in _nets(fp32) for a, b in
               zip(_nets(fp32)[net].values(), _nets(bf16)[net].values()))
    run = mlflow.MlflowClient(bf16.tracking_uri).get_run(r.mlflow_run_id)
    assert run.data.params["train.precision"] == "bf16"
    assert run.data.tags["bench.compute.precision"] == "bf16"
    assert _fingerprint(bf16)["compute"]["precision"] == "bf16"
    assert _fingerprint(fp32)["compute"]["precision"] == "fp32"

    from bench.tables import TableOptions, build_table, render

    table = build_table(TableOptions(metrics=("swd",), select="last", datasets=("toy",)), tracking_uri=bf16.tracking_uri)
    cells = table.cells
    assert sorted(cells["row"]) == ["CUT", "CUT (train.precision=bf16)"]  # never averaged into one cell
    marked = cells[cells["row"] == "CUT (train.precision=bf16)"].iloc[0]["marks"]
    notes = [table.footnotes[i - 1] for i in marked]
    assert any("trained with bf16 autocast (paper: fp32)" in n for n in notes), notes
    plain = cells[cells["row"] == "CUT"].iloc[0]["marks"]
    assert not any("autocast" in table.footnotes[i - 1] for i in plain)
    assert "CUT (train.precision=bf16)" in render(table, "md")


def test_fp16_run_checkpoints_its_grad_scaler(tmp_path):
    cfg, _ = _run(tmp_path, "fp16", method="pix2pix", **{"train.precision": "fp16"})
    amp = load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")["amp"]
    assert amp["scale"] > 0 and "_growth_tracker" in amp


def test_channels_last_nets_and_batches(tmp_path):
    cfg, r = _run(tmp_path, "cl", **{"train.channels_last": "true"})
    assert _fingerprint(cfg)["compute"]["channels_last"] is True
    m = methods.build("cut", preset="smoke")
    prepare_nets(m, TrainConfig(channels_last=True))
    conv = next(p for p in m.nets["netG"].parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_compile_keeps_the_official_state_dict_keys():
    m = methods.build("pix2pix", preset="smoke")
    keys = {k: list(net.state_dict()) for k, net in m.nets.items()}
    prepare_nets(m, TrainConfig(compile=True))
    assert all(net._compiled_call_impl is not None for net in m.nets.values())
    assert {k: list(net.state_dict()) for k, net in m.nets.items()} == keys  # no "_orig_mod." prefix


@pytest.mark.slow
def test_compiled_run_on_cpu(tmp_path):
    """torch.compile (inductor, CPU C++ kernels) of a smoke pix2pix: ~1 min of compilation on 2 cores."""
    cfg, r = _run(tmp_path, "compiled", method="pix2pix", **{"train.compile": "true", "n_epochs": "1"})
    assert _fingerprint(cfg)["compute"]["compile"] is True
    run = mlflow.MlflowClient(cfg.tracking_uri).get_run(r.mlflow_run_id)
    assert run.data.tags["bench.compute.compile"] == "true"


def test_tf32_switch_sets_the_cuda_flags_and_the_record():
    try:
        configure_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        configure_tf32(False)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    rec = compute_record(TrainConfig(tf32=True), {"intra_op": 1, "inter_op": 1})
    assert rec["tf32"] is True and rec["precision"] == "fp32"


def test_the_compute_record_reads_back_from_json_and_flat_protocol_tags():
    """bench.compute.* tags hold JSON (`false`); the flat bench.protocol.<metric>.compute.* tags hold str()
    text (`False`): both read back typed, so an fp32 run is never footnoted and a bf16 one always is."""
    from bench import compute
    from bench.tables import protocol_differences
    from bench.tracking import protocol_tags, read_protocols

    rec = compute_record(TrainConfig(precision="bf16", compile=True), {"intra_op": 1, "inter_op": 1})
    assert compute.from_tags(compute.compute_tags(rec)) == rec
    for train, said in ((TrainConfig(), ""), (TrainConfig(precision="bf16", compile=True), "bf16 autocast, torch.compile")):
        fingerprint = {"protocol": "clean", "compute": compute_record(train, {"intra_op": 2, "inter_op": 2})}
        flat = read_protocols(protocol_tags("fid", fingerprint))["fid"]
        assert flat["compute.channels_last"] == "False"  # as MLflow stores it
        for fp in (fingerprint, flat):
            assert compute.describe(compute.of_fingerprint(fp)) == said
            notes = protocol_differences(fp, "fid", "toy", "default", "smoke", "last")
            assert any("trained with" in n for n in notes) == bool(said), notes
    assert compute.setting(compute.from_tags(compute.compute_tags(rec))) == {"train.precision": "bf16",
                                                                             "train.compile": True}
