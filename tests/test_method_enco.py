"""EnCo: DAG sampling, the BYOL loss, stop-gradient, identity schedule, presets, counts and keys."""

from __future__ import annotations

import copy

import pytest
import torch

import methods
from bench.errors import ConfigError
from methods.enco import EnCo, EnCoHead, dag_sample_ids, gather_patches, random_sample_ids
from methods.losses.byol import byol_loss, multilayer_byol_loss


def batch(size: int = 32, n: int = 1, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
            "B": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
            "A_paths": ["a.png"] * n, "B_paths": ["b.png"] * n}


def smoke(**overrides) -> EnCo:
    torch.manual_seed(0)
    m = methods.build("enco", preset="smoke", **overrides)
    m.setup(batch(m.cfg.crop_size, m.cfg.batch_size))
    return m


# ------------------------------------------------------------------ BYOL loss
def test_byol_loss_is_0_for_identical_4_for_opposite_and_2_for_orthogonal():
    v = torch.tensor([[1.0, 2.0, -3.0], [0.5, 0.0, 1.0]])
    assert torch.allclose(byol_loss(v, v.clone()), torch.zeros(2), atol=1e-6)
    assert torch.allclose(byol_loss(v, -v), torch.full((2,), 4.0), atol=1e-6)
    assert torch.allclose(byol_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])), torch.tensor([2.0]))
    # scale-invariant, and the layer mean is the mean of per-layer means
    assert torch.allclose(byol_loss(v, 7 * v), torch.zeros(2), atol=1e-6)
    two = multilayer_byol_loss([v, v], [v, -v])
    assert two.item() == pytest.approx(2.0, abs=1e-6)


def test_byol_stop_gradient_detaches_the_target_only():
    q = torch.randn(4, 8, requires_grad=True)
    k = torch.randn(4, 8, requires_grad=True)
    byol_loss(q, k).sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0 and k.grad is None
    k2 = torch.randn(4, 8, requires_grad=True)
    byol_loss(q, k2, stop_gradient=False).sum().backward()
    assert k2.grad is not None and k2.grad.abs().sum() > 0


# ------------------------------------------------------------------ DAG sampling
def test_dag_keeps_the_lowest_scored_positions_when_every_position_is_a_candidate():
    # 4x4 map with distinct scores; 4 patches, 4x oversampling = all 16 positions are candidates.
    cam = torch.tensor([[9., 3., 15., 0.], [7., 12., 1., 14.], [5., 10., 2., 13.], [8., 4., 11., 6.]])
    ids = dag_sample_ids(cam[None, None], num_patches=4, oversample_ratio=4, random_ratio=0.0)
    assert ids.shape == (1, 4)
    assert ids[0].tolist() == [3, 6, 10, 1]  # the positions of scores 0, 1, 2, 3, lowest first


def test_dag_hard_part_is_sorted_ascending_among_candidates_and_the_rest_is_random():
    torch.manual_seed(3)
    b, h, w = 2, 8, 8
    cam = torch.randn(b, 1, h, w)
    ids = dag_sample_ids(cam, num_patches=16, oversample_ratio=2, random_ratio=0.5)
    assert ids.shape == (b, 16) and ids.dtype == torch.long
    assert ids.min() >= 0 and ids.max() < h * w
    for i in range(b):
        hard = cam[i].flatten()[ids[i, :8]]
        assert torch.all(hard[1:] >= hard[:-1]), "hard positions are ordered by ascending D score"
    # replay the RNG: the hard positions are the 8 lowest of the 32 candidates drawn first
    torch.manual_seed(3)
    torch.randn(b, 1, h, w)
    cand = torch.randperm(h * w)[:32]
    lowest = cand[torch.sort(cam[0].flatten()[cand]).indices[:8]]
    assert torch.equal(ids[0, :8], lowest)


def test_dag_prefers_fake_looking_regions_over_random():
    torch.manual_seed(0)
    cam = torch.ones(1, 1, 16, 16)
    cam[..., :8, :] = -1.0  # the upper half looks fake (low lsgan score)
    hard = dag_sample_ids(cam, num_patches=32, oversample_ratio=4, random_ratio=0.0)
    assert (hard[0] < 128).all()  # every kept candidate lies in the low-scored half


def test_random_sampling_shares_positions_over_the_batch():
    ids = random_sample_ids(3, 64, 10, "cpu")
    assert ids.shape == (3, 10) and torch.equal(ids[0], ids[2]) and len(set(ids[0].tolist())) == 10


def test_gather_patches_is_image_major():
    feat = torch.arange(2 * 3 * 2 * 2, dtype=torch.float).view(2, 3, 2, 2)
    ids = torch.tensor([[3, 0], [1, 1]])
    rows = gather_patches(feat, ids)
    expected = torch.stack([feat[0, :, 1, 1], feat[0, :, 0, 0], feat[1, :, 0, 1], feat[1, :, 0, 1]])
    assert torch.equal(rows, expected)


# ------------------------------------------------------------------ nets: counts and official keys
def test_parameter_count_matches_official_and_head_keys_and_shapes():
    m = methods.build("enco")
    assert m.parameter_count() == 14_653_892
    assert m.parameter_count(["netG"]) == 11_378_179
    assert m.parameter_count(["netF"]) == 510_976
    sd = m.nets["netF"].state_dict()
    for i, c in enumerate((64, 128, 256)):  # heads follow the decoder layers 28, 24, 18
        assert sd[f"mlp_{i}.0.weight"].shape == (256, c)
        assert sd[f"mlp_{i}.1.weight"].shape == (256,) and f"mlp_{i}.1.running_mean" in sd
        assert sd[f"mlp_{i}.3.weight"].shape == (256, 256) and f"mlp_{i}.3.bias" not in sd
        assert f"mlp_{i}.4.running_var" in sd and f"mlp_{i}.4.weight" not in sd  # BN without affine
        assert sd[f"prj_{i}.0.weight"].shape == (128, 256) and sd[f"prj_{i}.3.bias"].shape == (256,)
    assert isinstance(m.nets["netF"], EnCoHead)
    g = m.nets["netG"].state_dict()
    assert "model.1.weight" in g and "model.12.conv_block.1.weight" in g and "model.7.filt" in g


def test_layer_pairs_and_validation():
    cfg = EnCo.make_config()
    assert cfg.layer_pairs == [(3, 28), (7, 24), (13, 18)]
    with pytest.raises(ConfigError, match="even number"):
        EnCo.make_config(overrides={"nce_layers": "3,7,13"})
    with pytest.raises(ConfigError, match=r"\(3, 24\)"):
        methods.build("enco", preset="smoke", nce_layers=(3, 24))
    with pytest.raises(ConfigError, match="index the generator"):
        methods.build("enco", preset="smoke", nce_layers=(3, 40))
    with pytest.raises(ConfigError, match="lr_G"):
        EnCo.make_config(overrides={"lr": 1e-3})
    with pytest.raises(ConfigError, match="random_ratio"):
        EnCo.make_config(overrides={"random_ratio": 1.5})


def test_presets_paper_is_the_readme_command_and_code_defaults_the_code():
    code = EnCo.make_config("code-defaults")
    assert (code.lambda_NCE, code.lambda_IDT, code.n_epochs, code.n_epochs_decay) == (1.0, 10.0, 200, 200)
    assert (code.warmup_epochs, code.flip_equivariance, code.dag, code.pool_size) == (0, False, True, 0)
    assert (code.oversample_ratio, code.random_ratio, code.num_patches, code.netF_nc) == (4, 0.5, 256, 256)
    for dataset in (None, "cityscapes", "horse2zebra"):  # the README's command (written for Cityscapes), everywhere
        readme = EnCo.make_config("paper", dataset=dataset)
        assert (readme.lambda_NCE, readme.lambda_IDT, readme.n_epochs, readme.n_epochs_decay) == (2.0, 10.0, 100, 100)
        assert (readme.warmup_epochs, readme.flip_equivariance) == (20, True)
        assert (readme.lr_G, readme.lr_F, readme.lr_D, readme.nce_layers) == (5e-5, 5e-5, 2e-4, (3, 7, 13, 18, 24, 28))
    m = EnCo(readme)
    assert m.lr_lambda(0) == pytest.approx(1 / 20) and m.lr_lambda(19) == 1.0 and m.lr_lambda(99) == 1.0
    assert m.lr_lambda(150) < 1.0
    assert m.data_jitter(100) and not m.data_jitter(101)


def test_optimizers_have_separate_learning_rates():
    m = smoke()
    lrs = {k: opt.param_groups[0]["lr"] for k, opt in m.optimizers.items()}
    assert lrs == {"G": 5e-5, "F": 5e-5, "D": 2e-4}
    assert all(opt.param_groups[0]["betas"] == (0.5, 0.999) for opt in m.optimizers.values())


# ------------------------------------------------------------------ gradients: who updates what
def test_encoder_features_get_no_gradient_from_the_content_loss():
    for stop in (True, False):
        m = smoke(stop_gradient=stop)
        _, feats = m.nets["netG"](batch()["A"], m.cfg.nce_layers)
        # Independent leaves: in G the decoder features depend on the encoder ones, which would mix the paths.
        feats = [f.detach().requires_grad_() for f in feats]
        cam = torch.randn(1, 1, 2, 2)
        m.content_loss(feats, cam).backward()
        k_grads = [f.grad for f in feats[:3]]
        q_grads = [f.grad for f in feats[3:]]
        assert all(g is not None and g.abs().sum() > 0 for g in q_grads)
        if stop:
            assert all(g is None for g in k_grads), "stop-gradient: encoder features must not get BYOL gradient"
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in k_grads)


def test_key_branch_does_not_train_the_projection_head():
    m = smoke()
    feats_k = [torch.randn(1, c, 4, 4) for c in (8, 16, 32)]
    ids = [torch.randint(0, 16, (1, 8)) for _ in feats_k]
    k = m.nets["netF"]([gather_patches(f, i) for f, i in zip(feats_k, ids)])
    q = [torch.randn_like(t, requires_grad=True) for t in k]
    multilayer_byol_loss(q, k).backward()
    assert all(p.grad is None for p in m.nets["netF"].parameters())


def test_one_step_updates_G_F_D_and_leaves_D_trainable():
    m = smoke()
    before = {k: copy.deepcopy(net.state_dict()) for k, net in m.nets.items()}
    d_step, seen = m.optimizers["D"].step, {}

    def record_then_step(*a, **k):
        seen["D"] = [p.grad.clone() for p in m.nets["netD"].parameters()]
        seen["G"] = [p.grad for p in m.nets["netG"].parameters()]
        return d_step(*a, **k)

    m.optimizers["D"].step = record_then_step
    losses = m.train_step(batch())
    # the D loss reached no G parameter, and the G step added nothing to D's gradients (D frozen then)
    assert all(g is None for g in seen["G"])
    assert all(torch.equal(a, p.grad) for a, p in zip(seen["D"], m.nets["netD"].parameters()))
    assert set(losses) == {"D_real", "D_fake", "G_GAN", "BYOL", "BYOL_Y", "G"}
    assert all(torch.isfinite(v) for v in losses.values())
    for k, net in m.nets.items():
        for n, p in net.named_parameters():
            assert not torch.equal(p.detach(), before[k][n]), f"{k}.{n} did not move"
        assert all(p.requires_grad for p in net.parameters())


def test_identity_term_is_halved_while_lr_is_constant_and_off_in_the_decay_phase():
    m = smoke(n_epochs=2, n_epochs_decay=2)
    m.on_epoch_start(2)
    out = m.train_step(batch())
    assert out["BYOL_Y"] > 0
    assert out["G"].item() == pytest.approx((out["G_GAN"] + 0.5 * (out["BYOL"] + out["BYOL_Y"])).item(), rel=1e-5)
    m.on_epoch_start(3)
    out = m.train_step(batch())
    assert out["BYOL_Y"].item() == 0.0
    assert out["G"].item() == pytest.approx((out["G_GAN"] + out["BYOL"]).item(), rel=1e-5)
    # decay_idt scales λ_IDT by the remaining fraction of all epochs
    d = smoke(n_epochs=2, n_epochs_decay=2, decay_idt=True)
    d.on_epoch_start(1)
    assert d.lambda_idt() == pytest.approx(10.0 * 3 / 4)


def test_dag_off_uses_random_positions_and_still_trains():
    m = smoke(dag=False, lambda_GAN=0.0)
    out = m.train_step(batch(n=1))
    assert out["G_GAN"].item() == 0.0 and out["BYOL"] > 0


def test_translate_shape_and_state_dict_round_trip():
    m = smoke(batch_size=2)
    b = batch(n=2)
    m.train_step(b)
    y = m.translate(b["A"])
    assert y.shape == (2, 3, 32, 32) and y.abs().max() <= 1
    clone = smoke(batch_size=2)
    clone.load_state_dict(copy.deepcopy(m.state_dict()))  # deep copy: Adam would share its moment tensors
    assert torch.equal(clone.translate(b["A"]), y)
    # optimiser and BN state came along: the next step is identical
    torch.manual_seed(7)
    a = m.train_step(b)
    torch.manual_seed(7)
    c = clone.train_step(b)
    assert all(torch.equal(a[k], c[k]) for k in a)
