"""pix2pix: official layout and sizes, conditional 6-channel D, λ_L1 = 100, D-then-G order, test-time mode."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods.registry as registry
from bench.errors import ConfigError, UsageError
from methods.nets.unet import UnetGenerator

# (sha256[:16] of the [(key, shape), ...] list, parameter count), measured by instantiating the official
# classes of pytorch-CycleGAN-and-pix2pix@00d5574 (UnetGenerator unet_256 + BatchNorm + dropout;
# NLayerDiscriminator on 6 channels with BatchNorm) at ngf = ndf = 64.
OFFICIAL = {"netG": ("5d9b3635eb81a714", 54_413_955), "netD": ("74cdb0b3ab84b7f8", 2_768_705)}


def layout_hash(net: nn.Module) -> str:
    return hashlib.sha256(repr([(k, tuple(v.shape)) for k, v in net.state_dict().items()]).encode()).hexdigest()[:16]


def pair(n: int = 1, size: int = 32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(n, 3, size, size, generator=g) * 2 - 1, "B": torch.rand(n, 3, size, size, generator=g) * 2 - 1}


def smoke(**overrides):
    torch.manual_seed(0)
    return registry.build("pix2pix", preset="smoke", **overrides)


def test_paper_config_has_official_layout_and_counts():
    m = registry.build("pix2pix", device="meta")
    assert m.paired and not m.multimodal
    for key, (digest, count) in OFFICIAL.items():
        assert m.parameter_count([key]) == count, key
        assert layout_hash(m.nets[key]) == digest, key
    assert m.parameter_count() == 57_182_660
    assert m.nets["netD"].model[0].in_channels == 6
    # unet_128 (num_downs 7) at 128 px, as methods.md §1.4 counts it.
    assert sum(p.numel() for p in UnetGenerator(3, 3, 7, 64, "batch", True).to("meta").parameters()) == 41_828_995


def test_conditional_discriminator_sees_input_and_output_stacked():
    m = smoke()
    b = pair()
    m.setup(b)
    seen = []
    m.nets["netD"].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().clone()))
    m.train_step(b)
    assert len(seen) == 3  # D step: fake pair, real pair; G step: fake pair
    for x in seen:
        assert x.shape == (1, 6, 32, 32)
        assert torch.equal(x[:, :3], b["A"])
    assert torch.equal(seen[1][:, 3:], b["B"])


def test_losses_follow_the_objective_and_D_updates_before_G():
    m = smoke()
    b = pair()
    m.setup(b)
    fakes, order = [], []
    m.nets["netG"].register_forward_hook(lambda mod, inp, out: fakes.append(out.detach().clone()))
    for key, opt in m.optimizers.items():
        step = opt.step
        opt.step = lambda *a, _k=key, _s=step, **kw: (order.append(_k), _s(*a, **kw))[1]
    losses = m.train_step(b)
    assert set(losses) == {"G_GAN", "G_L1", "D_real", "D_fake"}
    assert order == ["D", "G"]
    assert losses["G_L1"].item() == pytest.approx(100.0 * F.l1_loss(fakes[0], b["B"]).item(), rel=1e-5)
    # vanilla GAN: BCE-with-logits, positive for any logit.
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_one_step_changes_every_trainable_parameter():
    m = smoke()
    b = pair()
    m.setup(b)
    before = {(k, n): p.detach().clone() for k, net in m.nets.items() for n, p in net.named_parameters()}
    m.train_step(b)
    for k, net in m.nets.items():
        for n, p in net.named_parameters():
            assert not torch.equal(p, before[(k, n)]), f"{k}.{n} did not change"


def test_translate_keeps_official_test_behaviour_without_touching_bn_buffers():
    # num_downs 6 at 64 px has one dropout level (unet_256 has three); the smoke depth 5 has none.
    m = smoke(load_size=64, crop_size=64, num_downs=6)
    G = m.nets["netG"]
    assert any(isinstance(mod, nn.Dropout) for mod in G.modules())
    G.eval()
    buffers = {k: v.clone() for k, v in G.state_dict().items() if "running" in k or "num_batches" in k}
    x = pair(3, 64)["A"]
    torch.manual_seed(1)
    batch = m.translate(x)
    torch.manual_seed(1)
    single = m.translate(x[:1])
    torch.manual_seed(2)
    other = m.translate(x[:1])
    assert torch.allclose(batch[:1], single, atol=1e-6)  # batch 1 per image, as the official test loop
    assert not torch.allclose(single, other)  # dropout stays on
    assert not G.training  # the caller's mode is restored
    for k, v in G.state_dict().items():
        if k in buffers:
            assert torch.equal(v, buffers[k]), f"{k} changed at test time"

    m_eval = smoke(load_size=64, crop_size=64, num_downs=6, test_mode_train_bn=False)
    torch.manual_seed(1)
    a = m_eval.translate(x)
    torch.manual_seed(2)
    assert torch.equal(a, m_eval.translate(x))
    assert m_eval.nets["netG"].training  # restored to train mode


def test_translate_is_one_way():
    with pytest.raises(UsageError):
        smoke().translate(pair()["A"], direction="BtoA")


def test_depth_must_fit_the_crop():
    with pytest.raises(ConfigError, match="num_downs=5"):
        registry.build("pix2pix", preset="paper", load_size=36, crop_size=32)
    cfg = registry.get("pix2pix").make_config("smoke")
    assert cfg.num_downs == 5 and cfg.lambda_L1 == 100.0 and cfg.gan_mode == "vanilla" and cfg.norm == "batch"
    with pytest.raises(ConfigError):
        registry.build("pix2pix", preset="smoke", num_downs=4)


def test_state_dict_round_trip():
    b = pair()
    m1 = smoke(test_mode_train_bn=False)
    m1.setup(b)
    m1.train_step(b)
    torch.manual_seed(5)
    m2 = registry.build("pix2pix", preset="smoke", test_mode_train_bn=False)
    m2.setup(b)
    m2.load_state_dict(m1.state_dict())
    x = pair(2, seed=3)["A"]
    assert torch.equal(m1.translate(x), m2.translate(x))
    assert m2.optimizers["G"].state_dict()["state"].keys() == m1.optimizers["G"].state_dict()["state"].keys()
