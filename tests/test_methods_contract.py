"""The contract every registered method fulfils (methods/base.py), at the smoke preset.

One parametrized test per rule, run for every registry name: a new method is checked by adding its
registry line (diffusers' SchedulerCommonTest idea).
"""

import copy

import pytest
import torch

import methods
from bench.errors import UsageError
from bench.runner import method_fits
from methods.base import Method

NAMES = methods.names()


def make_batch(m: Method, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    bs, s = m.cfg.batch_size, m.cfg.crop_size
    batch = {"A": torch.rand(bs, 3, s, s, generator=g) * 2 - 1, "B": torch.rand(bs, 3, s, s, generator=g) * 2 - 1,
             "A_path": [f"a{i}.png" for i in range(bs)], "B_path": [f"b{i}.png" for i in range(bs)]}
    if m.data_pipeline().color_jitter:  # the loader's colour-jittered crops (LSeSim --augment)
        batch.update({"A_aug": torch.rand(bs, 3, s, s, generator=g) * 2 - 1,
                      "B_aug": torch.rand(bs, 3, s, s, generator=g) * 2 - 1})
    return batch


@pytest.fixture(params=NAMES)
def built(request):
    torch.manual_seed(0)
    overrides = {"allow_random_vgg": True} if request.param in ("fsesim", "lsesim") else {}
    m = methods.build(request.param, preset="smoke", **overrides)
    batch = make_batch(m)
    m.setup(batch)
    return m, batch


def test_registry_entry_is_documented(built):
    m, _ = built
    cls = type(m)
    assert cls.citation and cls.official_code and cls.licence, f"{cls.__name__} lacks citation/official_code/licence"
    assert m.nets and m.optimizers, "nets and optimizers must exist after setup"
    assert m.generator_keys(), "translate needs at least one netG*"


def test_instance_norms_are_the_gradient_safe_ones(built):
    """Plain nn.InstanceNorm2d has a wrong backward at batch size 1 for channels_last gradients (torch 2.14 CPU);
    every method builds methods.nets.init.InstanceNorm2d instead."""
    m, _ = built
    plain = [f"{k}.{n}" for k, net in m.nets.items() for n, mod in net.named_modules()
             if type(mod) is torch.nn.InstanceNorm2d]
    assert not plain, plain


def test_train_step_gives_finite_losses_and_updates_every_optimised_parameter(built):
    m, batch = built
    m.train()
    before = {k: copy.deepcopy({n: p.detach().clone() for n, p in net.named_parameters()}) for k, net in m.nets.items()}
    losses = m.train_step(batch)
    assert losses and all(torch.isfinite(v).all() for v in losses.values()), losses
    assert all(not v.requires_grad for v in losses.values()), "losses must be detached"
    optimised = {id(p) for opt in m.optimizers.values() for g in opt.param_groups for p in g["params"]}
    # A parameter may stay put only when its gradient is exactly zero by the loss's algebra (e.g. the last
    # bias of a hinge-loss D at init: the real and fake terms cancel); never because no gradient reached it.
    stale = [f"{k}.{n}" for k, net in m.nets.items() for n, p in net.named_parameters()
             if id(p) in optimised and torch.equal(p.detach(), before[k][n])
             and (p.grad is None or bool(p.grad.abs().sum() > 0))]
    assert not stale, f"parameters with an optimiser but unchanged after one step: {stale[:8]}"


def test_translate_shapes(built):
    m, batch = built
    m.eval()
    z = m.sample_z(batch["A"].shape[0])
    y = m.translate(batch["A"], z=z)
    assert y.shape == batch["A"].shape and y.min() >= -1 and y.max() <= 1
    if m.two_way:
        assert m.translate(batch["B"], direction="BtoA").shape == batch["B"].shape
    else:
        with pytest.raises(UsageError, match="one-way"):
            m.translate(batch["B"], direction="BtoA")
    with pytest.raises(UsageError, match="'sideways' is not available"):
        m.translate(batch["A"], direction="sideways")


def test_state_dict_round_trip_reproduces_translations(built):
    m, batch = built
    m.train()
    m.train_step(batch)
    torch.manual_seed(1)
    clone = methods.build(m.name, preset="smoke", **({"allow_random_vgg": True} if m.name in ("fsesim", "lsesim") else {}))
    clone.setup(make_batch(clone, seed=5))
    clone.load_state_dict(m.state_dict())
    m.eval(), clone.eval()
    z = m.sample_z(batch["A"].shape[0], generator=torch.Generator().manual_seed(0))
    torch.manual_seed(2)
    a = m.translate(batch["A"], z=z)
    torch.manual_seed(2)
    b = clone.translate(batch["A"], z=z)
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- real images
FIXTURE_DATASETS = ("horse2zebra", "afhq", "cityscapes", "maps", "facades")


@pytest.mark.parametrize(("name", "dataset"), [(n, d) for n in NAMES for d in FIXTURE_DATASETS
                                                 if method_fits(n, d) is None])
def test_two_steps_on_real_fixture_images(fixtures_dir, name, dataset):
    """Every method takes finite steps on every real mini dataset it fits, through the harness's loader."""
    from bench.data.datasets import load_pairs
    from bench.train import collate

    torch.manual_seed(0)
    overrides = {"allow_random_vgg": True} if name in ("fsesim", "lsesim") else {}
    m = methods.build(name, preset="smoke", dataset=dataset, **overrides)  # the dataset's recipe, smoke-sized
    s = m.cfg.crop_size
    data = load_pairs(dataset, "train", root=fixtures_dir / "data" / f"{dataset}_mini", paired=m.paired,
                      load_size=m.cfg.load_size, crop_size=s, pipeline=m.data_pipeline())
    bs = m.cfg.batch_size
    items = [data[i % len(data)] for i in range(2 * bs)]
    batches = [collate(chunk) for chunk in (items[:bs], items[bs:])]
    assert batches[0]["A"].shape == (bs, 3, s, s)
    m.setup(batches[0])
    for b in batches:
        assert all(torch.isfinite(v).all() for v in m.train_step(b).values())
    m.eval()
    assert torch.isfinite(m.translate(batches[0]["A"], z=m.sample_z(bs))).all()
    if m.two_way:
        assert torch.isfinite(m.translate(batches[0]["B"], direction="BtoA")).all()
