"""Shared building blocks: official parameter counts, key names, shapes, blur filters, losses."""

import math

import pytest
import torch

from methods.base import discriminator_loss
from methods.losses.gan import gan_loss
from methods.losses.patchnce import multilayer_patch_nce, patch_nce
from methods.nets.antialias import Downsample, Upsample
from methods.nets.heads import PatchSampleF, l2_normalize
from methods.nets.image_pool import ImagePool
from methods.nets.init import norm_layer
from methods.nets.munit import AdaptiveInstanceNorm2d
from methods.nets.patchgan import NLayerDiscriminator
from methods.nets.resnet import ResnetGenerator


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_resnet_generator_counts_match_official():
    assert n_params(ResnetGenerator(ngf=64, n_blocks=9)) == 11_378_179
    assert n_params(ResnetGenerator(ngf=64, n_blocks=6)) == 7_837_699
    assert n_params(ResnetGenerator(ngf=64, n_blocks=9, antialias=True)) == 11_378_179


def test_patchgan_counts_and_output_size():
    d = NLayerDiscriminator(3, 64, 3, "instance")
    assert n_params(d) == 2_764_737
    assert n_params(NLayerDiscriminator(6, 64, 3, "batch")) == 2_768_705
    assert n_params(NLayerDiscriminator(3, 64, 3, "batch")) == 2_765_633
    x = torch.zeros(1, 3, 256, 256)
    assert d(x).shape == (1, 1, 30, 30)
    assert NLayerDiscriminator(3, 8, 3, "instance", antialias=True)(x).shape == (1, 1, 30, 30)


def test_official_key_layout_of_cut_generator():
    keys = ResnetGenerator(ngf=8, n_blocks=9, antialias=True).state_dict().keys()
    # anti-aliasing filters are persistent buffers in the official checkpoints
    assert "model.7.filt" in keys and "model.21.filt" in keys
    assert "model.12.conv_block.1.weight" in keys and "model.30.weight" in keys
    cg = ResnetGenerator(ngf=8, n_blocks=9).state_dict().keys()
    assert "model.10.conv_block.5.weight" in cg and "model.26.weight" in cg


def test_cut_feature_shapes_at_nce_layers():
    g = ResnetGenerator(ngf=8, n_blocks=9, antialias=True)
    feats = g(torch.zeros(1, 3, 64, 64), (0, 4, 8, 12, 16), encode_only=True)
    assert [tuple(f.shape[1:]) for f in feats] == [(3, 70, 70), (16, 64, 64), (32, 32, 32), (32, 16, 16), (32, 16, 16)]
    out, feats = g(torch.zeros(1, 3, 64, 64), (0, 4))
    assert out.shape == (1, 3, 64, 64) and len(feats) == 2


def test_blur_filters_are_normalised_and_resample_by_two():
    down, up = Downsample(2), Upsample(2)
    assert torch.allclose(down.filt.sum(dim=(2, 3)), torch.ones(2, 1))
    x = torch.ones(1, 2, 8, 8)
    assert torch.allclose(down(x), torch.ones(1, 2, 4, 4))  # a constant stays constant
    assert up(x).shape == (1, 2, 16, 16)
    assert torch.allclose(up(x), torch.ones(1, 2, 16, 16), atol=1e-6)


def test_patchsamplef_lazy_mlp_keys_and_count():
    f = PatchSampleF(nc=256)
    feats = [torch.randn(1, c, 4, 4) for c in (3, 128, 256, 256, 256)]
    out, ids = f(feats, num_patches=8)
    assert n_params(f) == 560_384
    assert "mlp_0.0.weight" in f.state_dict() and "mlp_4.2.bias" in f.state_dict()
    assert all(o.shape == (8, 256) for o in out)
    # xavier(0.02) makes tiny projections, so the official eps=1e-7 leaves norms slightly below 1
    assert torch.allclose(out[1].norm(dim=1), torch.ones(8), atol=1e-2)
    g = PatchSampleF(nc=256)
    g.load_state_dict(f.state_dict())  # lazy MLPs are created from the checkpoint's shapes
    again, _ = g(feats, num_patches=8, patch_ids=ids)
    assert all(torch.allclose(a, b) for a, b in zip(out, again))


def test_patchnce_hand_checked_case():
    # Orthonormal features, query == key: positive logit 1/tau, negatives 0 (others) and -10 (diagonal).
    q = torch.eye(4)
    loss = patch_nce(q, q.clone(), batch_size=1, tau=0.07)
    pos, negs = 1 / 0.07, [-10 / 0.07, 0.0, 0.0, 0.0]
    expected = -pos + math.log(math.exp(pos) + sum(math.exp(v) for v in negs))
    assert torch.allclose(loss, torch.full((4,), expected), atol=1e-5)
    # keys are detached: no gradient flows into them
    k = torch.eye(4, requires_grad=True)
    patch_nce(torch.eye(4, requires_grad=True), k, 1).mean().backward()
    assert k.grad is None
    # weight and mean over layers
    layers = multilayer_patch_nce([q, q], [q, q], 1, weight=2.0)
    assert torch.allclose(layers, torch.tensor(2 * expected), atol=1e-4)


def test_gan_losses():
    p = torch.tensor([[0.5, 1.5]])
    assert gan_loss(p, True, "lsgan").item() == pytest.approx(0.25)
    assert gan_loss(p, False, "lsgan").item() == pytest.approx((0.25 + 2.25) / 2)
    assert gan_loss(p, True, "hinge").item() == pytest.approx(0.25)  # -mean(min(p-1, 0))
    assert gan_loss(p, False, "hinge").item() == pytest.approx((1.5 + 2.5) / 2)
    with pytest.raises(ValueError):
        gan_loss(p, True, "nope")


def test_image_pool_returns_new_until_full_and_round_trips():
    torch.manual_seed(0)
    pool = ImagePool(2)
    a, b, c = (torch.full((1, 1, 2, 2), float(i)) for i in range(3))
    assert torch.equal(pool.query(a), a) and torch.equal(pool.query(b), b)
    outs = [pool.query(c).flatten()[0].item() for _ in range(20)]
    assert set(outs) <= {0.0, 1.0, 2.0} and len(set(outs)) > 1
    state = pool.state_dict()
    clone = ImagePool(0)
    clone.load_state_dict(state)
    assert clone.pool_size == 2 and all(torch.equal(x, y) for x, y in zip(clone.images, pool.images))
    assert torch.equal(l2_normalize(torch.tensor([[3.0, 4.0]])), torch.tensor([[0.6, 0.8]]))


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("which", ["instance", "adain"])
def test_instance_norms_give_true_gradients_for_channels_last_upstream_gradients(which, batch):
    """PatchNCE's permute-based sampling sends channels_last-strided gradients into G's last instance norm;
    plain F.instance_norm gets the input gradient wrong for them at batch size 1 on torch 2.14 CPU."""
    torch.manual_seed(0)
    norm = norm_layer("instance")(4) if which == "instance" else AdaptiveInstanceNorm2d(4)
    extra = () if which == "instance" else (torch.randn(batch, 4, dtype=torch.float64),
                                            torch.rand(batch, 4, dtype=torch.float64) + 0.5)
    x = torch.randn(batch, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(batch, 4, 5, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    u, eps = torch.randn_like(x), 1e-6
    with torch.no_grad():
        finite = ((norm(x + eps * u, *extra) - norm(x - eps * u, *extra)) / (2 * eps) * v).sum()
    grad = torch.autograd.grad(norm(x, *extra), x, v)[0]
    assert (grad * u).sum().item() == pytest.approx(finite.item(), rel=1e-6)


def test_discriminator_loss_never_reaches_the_generator():
    """An image pool of size 0 returns G's output itself; D's objective must still stop at it."""
    torch.manual_seed(0)
    D = NLayerDiscriminator(3, 8, 2, "instance")
    w = torch.ones((), requires_grad=True)
    fake = torch.rand(1, 3, 32, 32) * w  # stands for G's output
    loss, real_term, fake_term = discriminator_loss(D, torch.rand(1, 3, 32, 32), fake, "lsgan")
    loss.backward()
    assert w.grad is None and all(p.grad is not None for p in D.parameters())
    assert loss.item() == pytest.approx(0.5 * (real_term.item() + fake_term.item()))
