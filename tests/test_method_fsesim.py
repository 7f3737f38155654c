"""FSeSim / LSeSim: the spatially-correlative loss, the frozen VGG16, LSeSim's head step, counts, refusal."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch

import methods
from bench.errors import CheckpointError, ConfigError
from methods.fsesim import FSeSim, LSeSim
from methods.losses.spatial import (compare_similarity, patch_similarity, similarity_nce,
                                    spatial_correlative_loss, top_quarter_mask)
from methods.nets import vgg as vgg_mod
from methods.nets.vgg import VGG16Features, from_torchvision_state, load_vgg16_weights


@pytest.fixture(autouse=True)
def _no_vgg_cache(tmp_path, monkeypatch):
    """An empty torch hub: the ImageNet VGG16 is absent unless a test puts a file there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def batch(size: int = 32, n: int = 1, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
            "B": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
            # LSeSim's --augment crops, made by the loader (bench.data)
            "A_aug": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
            "B_aug": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
            "A_paths": ["a.png"] * n, "B_paths": ["b.png"] * n}


def torchvision_vgg16_features() -> torch.nn.Module:
    """torchvision's VGG16 `features` (random init) without building the 120M-parameter classifier."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["D"]).eval()


def torchvision_style_state() -> dict:
    """A state dict keyed like torchvision's vgg16 (`features.<i>.*`), as the cached file is."""
    return {f"features.{k}": v for k, v in torchvision_vgg16_features().state_dict().items()}


def smoke(name: str = "fsesim", **overrides):
    torch.manual_seed(0)
    m = methods.build(name, preset="smoke", allow_random_vgg=True, **overrides)
    m.setup(batch(m.cfg.crop_size, m.cfg.batch_size))
    return m


# ------------------------------------------------------------------ the loss on hand-checkable cases
def test_top_quarter_mask_keeps_entries_down_to_the_quarter_plus_one_largest():
    row = torch.tensor([[[0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.0, 0.5]]])  # N=8 -> N//4 = 2 -> keep 3 largest
    keep = top_quarter_mask(row)
    assert keep.tolist() == [[[False, True, False, True, False, True, False, False]]]
    assert top_quarter_mask(torch.arange(16.0).view(1, 1, 16)).sum() == 5  # 16//4 + 1


def test_spatial_loss_is_zero_for_identical_features_and_positive_otherwise():
    torch.manual_seed(0)
    f = torch.randn(2, 16, 8, 8)
    for mode in ("cos", "l1"):
        for use_norm in (False, True):
            same = spatial_correlative_loss(f, f.clone(), 16, 64, mode, use_norm)
            other = spatial_correlative_loss(f, torch.randn_like(f), 16, 64, mode, use_norm)
            assert same.item() == pytest.approx(0.0, abs=1e-6), (mode, use_norm)
            assert other.item() > 1e-3, (mode, use_norm)
    # the similarity is invariant to a per-channel offset (features are centred) and, with use_norm, to scale
    assert spatial_correlative_loss(f, 3 * f + 1, 16, 64, "cos", True).item() == pytest.approx(0.0, abs=1e-6)


def test_cos_mode_uses_smooth_l1_of_one_minus_the_row_cosine():
    src = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    tgt = torch.tensor([[[0.6, 0.8, 0.0, 0.0]]])
    # N=4: keep entries >= the 2nd largest of tgt -> positions 0 and 1; cos([1,0],[0.6,0.8]) = 0.6
    loss = compare_similarity(src, tgt, "cos", use_norm=False)
    assert loss.item() == pytest.approx(0.5 * 0.4**2)  # SmoothL1 (beta 1) of 0.4
    assert compare_similarity(src, tgt, "cos", use_norm=True).item() == pytest.approx(0.4)  # L1


def test_patch_similarity_window_matches_the_full_map_at_the_window_positions():
    torch.manual_seed(1)
    f = torch.randn(1, 8, 6, 6)
    ids = torch.tensor([0, 14, 35])  # corner, inside, opposite corner
    full = patch_similarity(f, ids, patch_size=64, use_norm=True)
    win = patch_similarity(f, ids, patch_size=3, use_norm=True)
    assert full.shape == (1, 3, 36) and win.shape == (1, 3, 9)
    # query 0 at (0,0): window rows 0-2, cols 0-2; query 14 at (2,2): rows 1-3, cols 1-3; 35 at (5,5): rows 3-5
    for q, (r0, c0) in enumerate([(0, 0), (1, 1), (3, 3)]):
        pos = [(r0 + r) * 6 + c0 + c for r in range(3) for c in range(3)]
        assert torch.allclose(win[0, q], full[0, q, pos], atol=1e-6)
    # the query's own entry is its squared norm after centring and L2 normalisation: 1
    assert full[0, 1, 14].item() == pytest.approx(1.0, abs=1e-5)


def test_similarity_nce_on_orthogonal_rows():
    s, tau = 4, 0.5
    rows = torch.eye(s)[None]  # row i similar only to position i
    loss = similarity_nce(rows, rows.clone(), torch.zeros(1, s, s), tau)
    # per row: positive logit 1/tau, 3*s - 1 zero logits
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 3 * s - 1))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ VGG16
def test_vgg_keys_follow_official_slices_and_outputs_match_torchvision():
    torch.manual_seed(0)
    features = torchvision_vgg16_features()
    net = VGG16Features()
    net.load_state_dict(from_torchvision_state({f"features.{k}": v for k, v in features.state_dict().items()}),
                        strict=True)
    assert sum(p.numel() for p in net.parameters()) == 14_714_688
    assert "relu3_1.10.weight" in net.state_dict() and "relu4_1.17.weight" in net.state_dict()
    x = torch.randn(1, 3, 32, 32)
    ours = net(x, [4, 7, 9])
    ref, h = {}, x
    with torch.no_grad():
        for i, layer in enumerate(features):
            h = layer(h)
            ref[i] = h.clone()
    # relu3_1 = features[11]; relu4_1 = the ReLU at features[18] (see nets/vgg.py); relu4_3 = features[22]
    for got, idx in zip(ours, (11, 18, 22)):
        assert torch.allclose(got, ref[idx], atol=1e-6)
    assert not any(p.requires_grad for p in net.parameters())


def test_random_vgg_is_one_fixed_network_and_leaves_the_global_rng_alone():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    a = VGG16Features()
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(4)
    b = VGG16Features()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    w = a.state_dict()["relu1_1.0.weight"]
    assert w.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.1)  # kaiming fan_out, like torchvision


def test_vgg_weights_are_verified_by_their_hash(tmp_path):
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(torchvision_style_state(), path)
    with pytest.raises(CheckpointError, match="397923af"):
        load_vgg16_weights(VGG16Features(), path)
    digest = vgg_mod.sha256_file(path)
    net = VGG16Features()
    record = load_vgg16_weights(net, path, sha256_prefix=digest[:8])
    assert record == f"torchvision:vgg16-397923af sha256:{digest}"
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_vgg16_weights(net, bad, sha256_prefix=vgg_mod.sha256_file(bad)[:8])


def test_refuses_to_train_without_imagenet_vgg_unless_allowed(tmp_path):
    m = methods.build("fsesim", preset="smoke", allow_random_vgg=False)
    with pytest.raises(ConfigError, match="allow_random_vgg=true"):
        m.setup(batch())
    assert not FSeSim.make_config("paper").allow_random_vgg and FSeSim.make_config("smoke").allow_random_vgg
    with pytest.raises(ConfigError, match="no such file"):
        methods.build("lsesim", preset="smoke", vgg_weights=str(tmp_path / "missing.pth")).setup(batch())
    ok = smoke("lsesim")
    assert ok.vgg_weights == "random" and ok.describe()["vgg_weights"] == "random"
    assert ok.describe()["vgg_layers"] == ["relu3_1", "relu4_1", "relu4_3"]
    assert ok.extra_state()["vgg_weights"] == "random"


def test_uses_and_records_cached_torchvision_weights(tmp_path, monkeypatch):
    cache = vgg_mod.torchvision_cache_path()
    cache.parent.mkdir(parents=True)
    torch.manual_seed(5)
    torch.save(torchvision_style_state(), cache)
    digest = vgg_mod.sha256_file(cache)
    monkeypatch.setattr("methods.nets.vgg.load_vgg16_weights",  # resolve_vgg16 calls it
                        functools.partial(load_vgg16_weights, sha256_prefix=digest[:8]))
    m = methods.build("fsesim", preset="smoke", allow_random_vgg=False)  # found, so no fallback needed
    m.setup(batch())
    assert m.vgg_weights == f"torchvision:vgg16-397923af sha256:{digest}"
    state = m.extra_state()
    assert state["vgg_weights"] == m.vgg_weights
    # a checkpoint trained with another VGG16 is refused
    other = methods.build("fsesim", preset="smoke", allow_random_vgg=False)
    other.setup(batch())
    sd = copy.deepcopy(m.state_dict())
    sd["extra"]["vgg_weights"] = "random"
    with pytest.raises(CheckpointError, match="VGG16"):
        other.load_state_dict(sd)


# ------------------------------------------------------------------ nets, counts, steps
def test_parameter_counts_and_netF_keys():
    f = methods.build("fsesim")
    assert f.parameter_count() == 14_142_916 and set(f.nets) == {"netG", "netD"}
    assert sum(p.numel() for p in f.netPre.parameters()) == 14_714_688
    assert not any(k.startswith("netPre") for k in f.state_dict()["nets"])
    s = methods.build("lsesim")
    assert s.parameter_count() == 14_142_916 + 184_960
    sd = s.nets["netF"].state_dict()
    assert sd["conv_0.0.weight"].shape == (64, 256, 1, 1) and sd["conv_0.2.weight"].shape == (64, 64, 1, 1)
    assert sd["conv_1.0.weight"].shape == (128, 512, 1, 1) and sd["conv_2.2.bias"].shape == (128,)
    assert len(sd) == 12
    cfg = FSeSim.make_config()
    assert (cfg.lr, cfg.pool_size, cfg.lambda_spatial, cfg.loss_mode, cfg.use_norm) == (1e-4, 50, 10.0, "cos", False)
    assert (cfg.attn_layers, cfg.patch_nums, cfg.patch_size, cfg.T) == ((4, 7, 9), 256, 64, 0.07)
    assert LSeSim.make_config().learned_attn and not cfg.learned_attn


def test_config_validation():
    with pytest.raises(ConfigError, match="attn_layers"):
        FSeSim.make_config(overrides={"attn_layers": "4,13"})
    with pytest.raises(ConfigError, match="learned_attn"):
        FSeSim.make_config(overrides={"augment": True})
    with pytest.raises(ConfigError, match="loss_mode"):
        FSeSim.make_config(overrides={"loss_mode": "info"})


@pytest.mark.parametrize("name", ["fsesim", "lsesim"])
def test_one_step_updates_trainable_nets_and_never_the_vgg(name):
    m = smoke(name)
    vgg_before = copy.deepcopy(m.netPre.state_dict())
    before = {k: copy.deepcopy(net.state_dict()) for k, net in m.nets.items()}
    losses = m.train_step(batch())
    expected = {"D_real", "D_fake", "G_GAN", "G_s", "G"} | ({"spatial"} if name == "lsesim" else set())
    assert set(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    assert losses["G_s"] > 0
    for k, net in m.nets.items():
        for n, p in net.named_parameters():
            assert not torch.equal(p.detach(), before[k][n]), f"{k}.{n} did not move"
    assert all(torch.equal(v, vgg_before[k]) for k, v in m.netPre.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in m.netPre.parameters())
    assert set(m.optimizers) == ({"G", "D", "F"} if name == "lsesim" else {"G", "D"})


def test_lsesim_heads_move_only_in_their_own_step():
    m = smoke("lsesim")
    seen = {}
    step = m.optimizers["F"].step

    def record_then_step(*a, **k):
        seen["grads"] = [p.grad.clone() for p in m.nets["netF"].parameters()]
        seen["G_grad"] = [p.grad for p in m.nets["netG"].parameters()]
        return step(*a, **k)

    m.optimizers["F"].step = record_then_step
    m.train_step(batch())
    # the F step's loss reached no G parameter (translation detached) ...
    assert all(g is None for g in seen["G_grad"])
    # ... and the G step added nothing to the heads' gradients (they were frozen)
    assert all(torch.equal(a, p.grad) for a, p in zip(seen["grads"], m.nets["netF"].parameters()))
    assert all(p.requires_grad for p in m.nets["netF"].parameters())


def test_lsesim_augment_step_runs():
    m = smoke("lsesim", augment=True)
    out = m.train_step(batch())
    assert torch.isfinite(out["spatial"])


def test_identity_options_add_their_terms():
    m = smoke(lambda_identity=0.5, lambda_spatial_idt=1.0)
    out = m.train_step(batch())
    assert out["idt_B"] > 0 and out["G_s_idt_B"] >= 0
    total = out["G_GAN"] + out["G_s"] + out["G_s_idt_B"] + out["idt_B"]
    assert out["G"].item() == pytest.approx(total.item(), rel=1e-5)


def test_translate_shape_and_round_trip_with_the_random_vgg():
    m = smoke("lsesim")
    b = batch()
    m.train_step(b)
    y = m.translate(b["A"])
    assert y.shape == (1, 3, 32, 32) and y.abs().max() <= 1
    torch.manual_seed(99)  # another global seed: the random VGG16 comes from its own fixed seed anyway
    clone = methods.build("lsesim", preset="smoke", allow_random_vgg=True)
    clone.setup(b)
    clone.load_state_dict(copy.deepcopy(m.state_dict()))
    assert all(torch.equal(v, clone.netPre.state_dict()[k]) for k, v in m.netPre.state_dict().items())
    assert "netPre" not in m.state_dict()["extra"] and m.state_dict()["extra"]["vgg_weights"] == "random"
    assert torch.equal(clone.translate(b["A"]), y)
    torch.manual_seed(7)
    a = m.train_step(b)
    torch.manual_seed(7)
    c = clone.train_step(b)
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_spatial_loss_gradient_reaches_the_translation():
    m = smoke()
    src = batch()["A"]
    tgt = batch(seed=1)["A"].requires_grad_()
    m.spatial_loss(src, tgt).backward()
    assert tgt.grad is not None and tgt.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["fsesim", "lsesim"])
def test_trains_without_an_image_pool(name):
    """pool_size=0 hands D the translation itself; D's step must not backpropagate into G's graph."""
    m = smoke(name, pool_size=0)
    assert all(torch.isfinite(v) for v in m.train_step(batch(m.cfg.crop_size, m.cfg.batch_size, seed=1)).values())
