"""The BicycleGAN family: KL sum, frozen-E latent regression, batch halves, per-variant terms, layout, hooks."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from torch import nn

import methods.registry as registry
from bench.errors import ConfigError, UsageError
from methods.losses.kl import kl_to_standard_normal, reparameterize

FAMILY = ["pix2pix_noise", "cae_gan", "cvae_gan", "cvae_gan_pp", "clr_gan", "bicyclegan"]

# (sha256[:16] of the [(key, shape), ...] list, parameter count), measured by instantiating the official
# classes of junyanz/BicycleGAN@40b9d52 (G_Unet_add_all / G_Unet_add_input, E_ResNet / E_NLayers,
# D_NLayersMulti) with the paper settings at 256 px, keyed "<overrides>/<net>".
OFFICIAL = {
    "/netG": ("ce870a9814badaad", 54_794_627),
    "/netE": ("6ca93a8dff57e86c", 2_590_032),
    "/netD": ("4789a9a30646d1ef", 3_458_978),
    "/netD2": ("4789a9a30646d1ef", 3_458_978),
    "where_add=input/netG": ("4941281be586895e", 54_417_795),
    "netE=E_CNN/netE": ("c6d58d200930bfff", 2_760_656),
    "vae=false lambda_kl=0/netE": ("663878a7a77e72b9", 2_587_976),
    "nz=256/netG": ("72497d51fca8d4db", 66_730_371),
    "conditional_D=true/netD": ("b649778b8d47a65e", 3_463_586),
}

# Loss terms and nets each variant has (paper §3 / Fig. 2; official loss names).
VARIANTS = {
    "pix2pix_noise": ({"G_GAN", "G_L1", "D"}, {"netG", "netD"}),
    "cae_gan": ({"G_GAN", "G_L1", "D"}, {"netG", "netD", "netE"}),
    "cvae_gan": ({"G_GAN", "G_L1", "kl", "D"}, {"netG", "netD", "netE"}),
    "cvae_gan_pp": ({"G_GAN", "G_L1", "kl", "G_GAN2", "D", "D2"}, {"netG", "netD", "netD2", "netE"}),
    "clr_gan": ({"G_GAN2", "z_L1", "D2"}, {"netG", "netD2", "netE"}),
    "bicyclegan": ({"G_GAN", "G_L1", "kl", "G_GAN2", "z_L1", "D", "D2"}, {"netG", "netD", "netD2", "netE"}),
}


def layout_hash(net: nn.Module) -> str:
    return hashlib.sha256(repr([(k, tuple(v.shape)) for k, v in net.state_dict().items()]).encode()).hexdigest()[:16]


def pairs(n: int, size: int = 32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(n, 3, size, size, generator=g) * 2 - 1, "B": torch.rand(n, 3, size, size, generator=g) * 2 - 1}


def constant_pairs(n: int, size: int = 32) -> dict:
    """Pairs whose images are told apart by value: A_i = 0.1·(i+1), B_i = -0.1·(i+1)."""
    vals = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1) * 0.1
    return {"A": vals.expand(n, 3, size, size).clone(), "B": (-vals).expand(n, 3, size, size).clone()}


def smoke(name: str = "bicyclegan", **overrides):
    torch.manual_seed(0)
    m = registry.build(name, preset="smoke", **overrides)
    return m


def ready(name: str = "bicyclegan", **overrides):
    m = smoke(name, **overrides)
    m.setup(pairs(m.cfg.batch_size))
    return m


def record_inputs(net: nn.Module) -> list[tuple]:
    calls: list[tuple] = []
    net.register_forward_hook(lambda mod, inp, out: calls.append(tuple(t.detach().clone() for t in inp)))
    return calls


def biases_before_instance_norm(net: nn.Module) -> set[str]:
    """Conv biases followed directly by an affine-free InstanceNorm: their gradient is 0 up to rounding."""
    out = set()
    for prefix, mod in net.named_modules():
        children = list(mod.named_children())
        for (name, a), (_, b) in zip(children, children[1:]):
            if isinstance(a, (nn.Conv2d, nn.ConvTranspose2d)) and a.bias is not None and isinstance(b, nn.InstanceNorm2d):
                out.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return out


# ----------------------------------------------------------------------------- KL
def test_kl_is_summed_over_batch_and_nz():
    mu = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, math.log(0.5)]])
    # per element 0.5·(μ² + σ² − 1 − log σ²)
    by_hand = 0.5 * (0.25) + 0.5 * (1 + 2 - 1 - math.log(2.0)) + 0.0 + 0.5 * (4 + 0.5 - 1 - math.log(0.5))
    assert kl_to_standard_normal(mu, logvar).item() == pytest.approx(by_hand, rel=1e-6)
    assert kl_to_standard_normal(mu, logvar, "batchmean").item() == pytest.approx(by_hand / 2, rel=1e-6)
    assert kl_to_standard_normal(torch.zeros(3, 8), torch.zeros(3, 8)).item() == 0.0


def test_reparameterize_passes_gradients_to_mu_and_logvar():
    mu = torch.zeros(4, 8, requires_grad=True)
    logvar = torch.zeros(4, 8, requires_grad=True)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    z.pow(2).sum().backward()
    assert mu.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0
    assert torch.equal(z, reparameterize(mu, logvar, torch.Generator().manual_seed(0)))


def test_kl_term_of_a_step_is_lambda_times_the_sum_over_the_encoded_half():
    m = ready(batch_size=4, init_gain=1.0)  # gain 1 so μ, log σ² are far from 0
    outs = []
    m.nets["netE"].register_forward_hook(lambda mod, inp, out: outs.append(out))
    losses = m.train_step(pairs(4))
    mu, logvar = outs[0]  # first E call: the encoded half B₁ (2 images)
    assert mu.shape == (2, 8)
    expected = -0.5 * 0.01 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    assert losses["kl"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses["kl"].item() > 0


# ----------------------------------------------------------------------------- latent regression
def test_latent_regression_updates_G_only():
    # Only the latent term: E must stay bit-identical while G moves.
    m = ready(lambda_L1=0, lambda_GAN=0, lambda_GAN2=0, lambda_kl=0, batch_size=1)
    assert set(m.nets) == {"netG", "netE"}
    E0 = {k: v.clone() for k, v in m.nets["netE"].state_dict().items()}
    G0 = {k: v.clone() for k, v in m.nets["netG"].state_dict().items()}
    losses = m.train_step(pairs(1))
    assert set(losses) == {"z_L1"} and losses["z_L1"] > 0
    assert all(torch.equal(v, E0[k]) for k, v in m.nets["netE"].state_dict().items())
    assert all(p.grad is None for p in m.nets["netE"].parameters())
    assert any(not torch.equal(v, G0[k]) for k, v in m.nets["netG"].state_dict().items())


def test_latent_regression_gradient_reaches_G_through_the_frozen_E():
    m = ready()
    fake = m.nets["netG"](pairs(2)["A"][:1], torch.randn(1, 8))
    terms = m.latent_terms(fake, torch.randn(1, 8))
    terms["z_L1"].backward()
    assert all(p.grad is None for p in m.nets["netE"].parameters())
    assert all(p.requires_grad for p in m.nets["netE"].parameters())  # unfrozen afterwards
    g = [p.grad for p in m.nets["netG"].parameters()]
    assert all(x is not None for x in g) and sum(x.abs().sum() for x in g) > 0


def test_clr_gan_trains_its_encoder_with_the_latent_term():
    m = ready("clr_gan")
    assert m.cfg.latent_updates_E and not m.cfg.vae
    E0 = {k: v.clone() for k, v in m.nets["netE"].state_dict().items()}
    m.train_step(pairs(1))
    assert all(not torch.equal(v, E0[k]) for k, v in m.nets["netE"].state_dict().items())


# ----------------------------------------------------------------------------- batch halves
@pytest.mark.parametrize("own_A", [False, True])
def test_encoded_half_feeds_D_and_random_half_feeds_D2(own_A):
    m = ready(random_branch_own_A=own_A)
    b = constant_pairs(2)
    A1, A2, B1, B2 = b["A"][:1], b["A"][1:], b["B"][:1], b["B"][1:]
    calls = {k: record_inputs(m.nets[k]) for k in ("netG", "netE", "netD", "netD2")}
    m.train_step(b)
    # E encodes B₁, then regresses z from the random-branch fake.
    assert torch.equal(calls["netE"][0][0], B1)
    # G: encoded fake from A₁; random fake from A₁ (official) or A₂ (random_branch_own_A).
    (x_enc, z_enc), (x_rand, z_rand) = calls["netG"]
    assert torch.equal(x_enc, A1)
    assert torch.equal(x_rand, A2 if own_A else A1)
    assert z_enc.shape == z_rand.shape == (1, 8)
    # D: [G step fake_enc, D step fake_enc, real B₁]; D2: [.., .., real B₂].
    assert len(calls["netD"]) == len(calls["netD2"]) == 3
    assert torch.equal(calls["netD"][2][0], B1)
    assert torch.equal(calls["netD2"][2][0], B2)
    assert not torch.equal(calls["netD"][0][0], calls["netD2"][0][0])


def test_conditional_D_pairs_the_random_fake_with_A1_and_the_real_with_A2():
    m = ready(conditional_D=True)
    b = constant_pairs(2)
    calls = record_inputs(m.nets["netD2"])
    m.train_step(b)
    fake_in, real_in = calls[1][0], calls[2][0]
    assert fake_in.shape[1] == real_in.shape[1] == 6
    assert torch.equal(fake_in[:, :3], b["A"][:1])
    assert torch.equal(real_in, torch.cat([b["A"][1:], b["B"][1:]], 1))


def test_cvae_gan_runs_the_official_batch_of_two_and_uses_its_first_half():
    """Official flags --lambda_GAN2 0 --lambda_z 0: batch 2, forward's first half encoded, the second unused, so
    an epoch of N images makes N/2 updates (bench made N before, twice the official number)."""
    cfg = registry.get("cvae_gan").make_config("paper")
    assert (cfg.batch_size, cfg.split_batch) == (2, True)
    m = ready("cvae_gan")
    calls, g_calls = record_inputs(m.nets["netE"]), record_inputs(m.nets["netG"])
    b = constant_pairs(2)
    m.train_step(b)
    assert calls[0][0].shape[0] == 1 and torch.equal(calls[0][0], b["B"][:1])
    assert all(torch.equal(c[0], b["A"][:1]) for c in g_calls)  # A2 never reaches G


def test_single_branch_variants_use_the_whole_batch():
    m = ready("cvae_gan", batch_size=2, split_batch=False)  # every image trains (the earlier bench behaviour)
    calls = record_inputs(m.nets["netE"])
    m.train_step(pairs(2))
    assert calls[0][0].shape[0] == 2
    m = ready("cae_gan", batch_size=2)
    calls = record_inputs(m.nets["netE"])
    m.train_step(pairs(2))
    assert calls[0][0].shape[0] == 2


def test_odd_batches_are_rejected_when_both_branches_train():
    with pytest.raises(ConfigError, match="even"):
        registry.build("bicyclegan", preset="smoke", batch_size=3)
    m = ready()
    with pytest.raises(UsageError, match="odd"):
        m.train_step(pairs(1))


# ----------------------------------------------------------------------------- variants
@pytest.mark.parametrize("name", FAMILY)
def test_each_variant_has_the_papers_terms_and_nets(name):
    m = ready(name)
    terms, nets = VARIANTS[name]
    assert set(m.nets) == nets
    assert m.paired and m.multimodal
    losses = m.train_step(pairs(m.cfg.batch_size))
    assert set(losses) == terms
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("name", FAMILY)
def test_one_step_changes_every_trainable_parameter(name):
    m = ready(name)
    before = {(k, n): p.detach().clone() for k, net in m.nets.items() for n, p in net.named_parameters()}
    m.train_step(pairs(m.cfg.batch_size))
    for k, net in m.nets.items():
        zero_grad = biases_before_instance_norm(net)
        for n, p in net.named_parameters():
            if n not in zero_grad:
                assert not torch.equal(p, before[(k, n)]), f"{name}: {k}.{n} did not change"


def test_cae_gan_encoder_is_deterministic_without_kl():
    m = ready("cae_gan")
    E = m.nets["netE"]
    assert not hasattr(E, "fcVar") and not m.cfg.vae and m.cfg.lambda_kl == 0
    B = pairs(1)["B"]
    z, mu, logvar = m.encoded_code(B)
    assert logvar is None and torch.equal(z, mu) and torch.equal(z, m.encoded_code(B)[0])
    with pytest.raises(ConfigError, match="lambda_kl"):
        registry.build("cae_gan", preset="smoke", lambda_kl=0.01)


def test_pix2pix_noise_has_no_encoder_hooks():
    m = ready("pix2pix_noise")
    assert not hasattr(m, "reconstruct") and not hasattr(m, "encode")
    calls = record_inputs(m.nets["netG"])
    m.train_step(pairs(1))
    assert calls[0][1].shape == (1, 8)  # z from the prior


def test_ablation_options_build():
    for overrides in ({"netE": "E_CNN"}, {"where_add": "input"}, {"nz": 2}, {"nz": 256}):
        m = ready(**overrides)
        losses = m.train_step(pairs(2))
        assert all(torch.isfinite(v) for v in losses.values()), overrides
        assert m.translate(pairs(1)["A"]).shape == (1, 3, 32, 32)


# ----------------------------------------------------------------------------- order, hooks, state
def test_G_and_E_update_before_D_and_D2():
    m = ready()
    order = []
    for key, opt in m.optimizers.items():
        step = opt.step
        opt.step = lambda *a, _k=key, _s=step, **kw: (order.append(_k), _s(*a, **kw))[1]
    m.train_step(pairs(2))
    assert order[:2] in (["G", "E"], ["E", "G"]) and order[2:] == ["D", "D2"]


def test_multimodal_hooks():
    m = ready()
    x, b = pairs(3)["A"], pairs(3, seed=1)["B"]
    assert m.translate(x).shape == (3, 3, 32, 32)
    z = m.sample_z(3, torch.Generator().manual_seed(0))
    assert z.shape == (3, 8) and torch.equal(z, m.sample_z(3, torch.Generator().manual_seed(0)))
    y = m.translate(x, z)
    assert torch.equal(y, m.translate(x, z))  # eval mode: no dropout
    assert m.nets["netG"].training  # the caller's mode is restored
    assert not torch.equal(y, m.translate(x, m.sample_z(3, torch.Generator().manual_seed(1))))
    mu = m.encode(b)
    assert mu.shape == (3, 8) and torch.equal(mu, m.encode(b))  # μ, no sampling noise
    assert torch.equal(m.reconstruct(x, b), m.translate(x, mu))
    with pytest.raises(UsageError, match="nz=8"):
        m.translate(x, torch.zeros(3, 4))
    with pytest.raises(UsageError):
        m.translate(x, direction="BtoA")
    with pytest.raises(UsageError, match="num_downs_E"):
        m.encode(pairs(1, size=64)["B"])


def test_state_dict_round_trip():
    m1 = ready()
    m1.train_step(pairs(2))
    torch.manual_seed(7)
    m2 = registry.build("bicyclegan", preset="smoke")
    m2.setup(pairs(2))
    m2.load_state_dict(m1.state_dict())
    x, z = pairs(2, seed=4)["A"], torch.randn(2, 8)
    assert torch.equal(m1.translate(x, z), m2.translate(x, z))
    assert torch.equal(m1.encode(x), m2.encode(x))
    for k in m1.optimizers:
        assert m2.optimizers[k].state_dict()["state"].keys() == m1.optimizers[k].state_dict()["state"].keys()


# ----------------------------------------------------------------------------- sizes and config
@pytest.mark.parametrize("key", list(OFFICIAL))
def test_paper_config_has_official_layout_and_counts(key):
    spec, net = key.split("/")
    overrides = dict(kv.split("=") for kv in spec.split()) if spec else {}
    m = registry.build("bicyclegan", device="meta", **overrides)
    digest, count = OFFICIAL[key]
    assert m.parameter_count([net]) == count
    assert layout_hash(m.nets[net]) == digest


def test_paper_totals():
    m = registry.build("bicyclegan", device="meta")
    assert m.parameter_count() == 64_302_615
    c = m.cfg
    assert (c.batch_size, c.nz, c.where_add, c.netE, c.num_Ds, c.gan_mode) == (2, 8, "all", "E_ResNet", 2, "lsgan")
    assert (c.lambda_L1, c.lambda_GAN, c.lambda_GAN2, c.lambda_z, c.lambda_kl) == (10, 1, 1, 0.5, 0.01)
    assert registry.build("pix2pix_noise", device="meta").parameter_count() == 54_794_627 + 3_458_978


def test_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match="num_downs_E=2"):
        registry.build("bicyclegan", preset="smoke", num_downs_E=5)
    with pytest.raises(ConfigError, match="basic_128_multi"):
        registry.build("bicyclegan", preset="smoke", netD="basic_256_multi")
    with pytest.raises(ConfigError, match="nothing would be trained"):
        registry.build("clr_gan", preset="smoke", lambda_GAN2=0, lambda_z=0)
    with pytest.raises(ConfigError, match="num_downs"):
        registry.build("bicyclegan", preset="paper", load_size=36, crop_size=32)
