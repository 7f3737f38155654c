"""NICE-GAN (full and light): official keys and parameter counts, decoupled encoder updates, AdaILN's
bounded ρ, the iteration schedule, and the Method contract at smoke size."""

from __future__ import annotations

import io
import math
import time

import pytest
import torch

import methods
from bench.errors import ConfigError, UsageError
from methods.nets.nice import AdaILN, ILN, NICEDiscriminator, NICEGenerator, min_image_size

NAMES = ["nicegan", "nicegan_light"]


def _batch(size: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(1, 3, size, size, generator=g) * 2 - 1,
            "B": torch.rand(1, 3, size, size, generator=g) * 2 - 1}


# Below the smoke preset (96 px, n_dis 7) to keep the suite fast on a shared CPU: 48 px is the smallest
# image for n_dis 6; same code path.
TINY = {"crop_size": 48, "load_size": 52, "n_dis": 6}


def _ready(name: str, **overrides):
    torch.manual_seed(0)
    m = methods.build(name, preset="smoke", **{**TINY, **overrides})
    batch = _batch(m.cfg.crop_size)
    m.setup(batch)
    m.train()
    return m, batch


def _params(net) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in net.named_parameters()}


def _changed(before: dict, net) -> set[str]:
    return {k for k, p in net.named_parameters() if not torch.equal(before[k], p.detach())}


# ----------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("name,total,gen", [("nicegan", 646_697_986, 276_474_560),
                                            ("nicegan_light", 109_958_146, 8_104_640)])
def test_parameter_counts_match_official_on_meta_device(name, total, gen):
    m = methods.build(name, device="meta")  # the full model would allocate 2.6 GB
    assert next(m.nets["gen2B"].parameters()).is_meta
    assert m.parameter_count() == total
    assert m.parameter_count(["gen2B"]) == m.parameter_count(["gen2A"]) == gen
    assert m.parameter_count(["disA"]) == m.parameter_count(["disB"]) == 46_874_433
    enc = sum(p.numel() for p in m.nets["disA"].encoder_parameters())
    assert enc == 167_489  # methods.md §2.8: encoder 167,489 of the discriminator's 46,874,433


def test_full_generator_has_the_268M_fc():
    m = methods.build("nicegan", device="meta")
    assert tuple(m.nets["gen2A"].FC[0].weight.shape) == (256, 64 * 64 * 256)
    assert m.nets["gen2A"].FC[0].weight.numel() == 268_435_456


def test_state_dict_keys_and_shapes_are_official():
    m = methods.build("nicegan", device="meta")
    assert set(m.nets) == {"gen2B", "gen2A", "disA", "disB"}
    g, d = m.nets["gen2B"].state_dict(), m.nets["disA"].state_dict()
    assert (len(g), len(d)) == (52, 40)  # counted on the official classes at 256 px, n_res 6, n_dis 7
    expected_g = {"FC.0.weight": (256, 1_048_576), "FC.2.weight": (256, 256), "gamma.weight": (256, 256),
                  "beta.weight": (256, 256), "UpBlock0.1.weight": (256, 128, 3, 3), "UpBlock0.2.rho": (1, 256, 2),
                  "UpBlock0.2.gamma": (1, 256, 1, 1), "UpBlock1_6.conv2.weight": (256, 256, 3, 3),
                  "UpBlock1_6.norm2.rho": (1, 256, 2), "UpBlock2.4.weight": (512, 128, 1, 1),
                  "UpBlock2.12.bias": (256,), "UpBlock2.14.rho": (1, 64, 2), "UpBlock2.17.weight": (3, 64, 7, 7)}
    expected_d = {"model.1.weight_orig": (64, 3, 4, 4), "model.1.weight_u": (64,), "model.1.weight_v": (48,),
                  "model.4.weight_orig": (128, 64, 4, 4), "fc.weight_orig": (1, 256),
                  "conv1x1.weight": (128, 256, 1, 1), "lamda": (1,), "Dis0_0.1.weight_orig": (256, 128, 4, 4),
                  "Dis0_1.1.weight_orig": (512, 256, 4, 4), "conv0.weight_orig": (1, 512, 4, 4),
                  "Dis1_0.4.weight_orig": (1024, 512, 4, 4), "Dis1_1.1.weight_orig": (2048, 1024, 4, 4),
                  "conv1.weight_orig": (1, 2048, 4, 4)}
    for sd, expected in ((g, expected_g), (d, expected_d)):
        for key, shape in expected.items():
            assert tuple(sd[key].shape) == shape, key


def test_discriminator_outputs_and_receptive_field_sizes():
    d = NICEDiscriminator(3, 8, 7)
    local, glob, cam, heatmap, z = d(torch.randn(2, 3, 128, 128))
    # 256 px gives 30×30 / 6×6 (methods.md §2.8); 128 px gives 14×14 / 2×2.
    assert local.shape == (2, 1, 14, 14) and glob.shape == (2, 1, 2, 2)
    assert cam.shape == (2, 1) and heatmap.shape == (2, 1, 32, 32) and z.shape == (2, 16, 32, 32)
    assert min_image_size(7) == 96 and min_image_size(6) == 48


def test_encoder_is_the_front_of_the_discriminator():
    m, batch = _ready("nicegan_light")
    m.eval()
    before = m.translate(batch["A"])
    with torch.no_grad():
        m.nets["disA"].conv0.weight_orig.add_(1.0)  # a head: irrelevant to translation
    assert torch.equal(m.translate(batch["A"]), before)
    with torch.no_grad():
        m.nets["disA"].model[1].weight_orig.mul_(1.5)  # the encoder's first conv
    assert not torch.allclose(m.translate(batch["A"]), before)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", NAMES)
def test_one_step_updates_every_parameter_with_finite_losses(name):
    m, batch = _ready(name)
    before = {k: _params(net) for k, net in m.nets.items()}
    losses = m.train_step(batch)
    assert {"Discriminator_loss", "Generator_loss", "G_cycle_loss_A", "G_recon_loss_B", "D_ad_cam_loss_A"} <= set(losses)
    assert all(torch.isfinite(v).all() and v.dim() == 0 and not v.requires_grad for v in losses.values())
    for k, net in m.nets.items():
        unchanged = set(before[k]) - _changed(before[k], net)
        assert not unchanged, f"{k}: {sorted(unchanged)}"
    # The generator step restores the discriminators' requires_grad.
    assert all(p.requires_grad for k in ("disA", "disB") for p in m.nets[k].parameters())


@pytest.mark.parametrize("name", NAMES)
def test_generator_step_leaves_encoders_untouched_and_D_step_trains_them(name):
    # weight_decay 0 so that every change below comes from a gradient, not from the decay term.
    m, batch = _ready(name, weight_decay=0.0)
    A, B = batch["A"], batch["B"]
    snap = {k: _params(net) for k, net in m.nets.items()}
    m.step_G(A, B)
    for k in ("disA", "disB"):
        assert not _changed(snap[k], m.nets[k]), f"generator step changed {k}"
        assert all(p.grad is None for p in m.nets[k].parameters()), "generator step left gradients on D"
    assert _changed(snap["gen2A"], m.nets["gen2A"]) and _changed(snap["gen2B"], m.nets["gen2B"])

    snap = {k: _params(net) for k, net in m.nets.items()}
    m.step_D(A, B)
    for k in ("gen2A", "gen2B"):
        assert not _changed(snap[k], m.nets[k]), f"discriminator step changed {k}"
    for k in ("disA", "disB"):
        changed = _changed(snap[k], m.nets[k])
        enc = {"model.1.weight_orig", "model.4.weight_orig", "fc.weight_orig", "lamda"}
        assert enc <= changed, f"{k}: encoder not trained by the D step"


def test_optimisers_are_official():
    m, _ = _ready("nicegan_light")
    for key in ("G", "D"):
        group = m.optimizers[key].param_groups[0]
        assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-4, (0.5, 0.999), 1e-4)
    g_ids = {id(p) for p in m.optimizers["G"].param_groups[0]["params"]}
    assert not g_ids & {id(p) for k in ("disA", "disB") for p in m.nets[k].parameters()}
    assert len(g_ids) == len(list(m.nets["gen2A"].parameters())) * 2


@pytest.mark.parametrize("name", NAMES)
def test_smoke_preset_step_is_fast(name):
    torch.manual_seed(0)
    m = methods.build(name, preset="smoke")
    assert (m.cfg.crop_size, m.cfg.n_dis, m.cfg.ngf) == (96, 7, 8)  # paper depth, toy width
    batch = _batch(m.cfg.crop_size)
    m.setup(batch)
    # CPU time of one thread (see _one_thread): not inflated by other processes or OpenMP spinning.
    m.train_step(batch)  # warm-up
    start = time.process_time()
    m.train_step(batch)
    cpu = time.process_time() - start
    assert cpu < 2.0, f"{name} smoke step took {cpu:.2f} s of CPU"


# ----------------------------------------------------------------------------- AdaILN
def test_adailn_rho_stays_in_unit_interval_whatever_the_raw_parameter():
    norm = AdaILN(4)
    rho_in, rho_ln = norm.rho_weights()
    assert torch.allclose(rho_in, torch.full_like(rho_in, 1 / (1 + math.exp(-2.2))))  # softmax(3.2, 1)
    with torch.no_grad():
        norm.rho.copy_(torch.tensor([[[1e4, -1e4], [-1e4, 1e4], [50.0, 50.0], [-3.0, 7.0]]]))
    rho_in, rho_ln = norm.rho_weights()
    assert ((rho_in >= 0) & (rho_in <= 1)).all() and ((rho_ln >= 0) & (rho_ln <= 1)).all()
    assert torch.allclose(rho_in + rho_ln, torch.ones_like(rho_in))
    assert rho_in.flatten().tolist()[:3] == [1.0, 0.0, 0.5]

    # Saturated at IN: the output is plain instance norm (unbiased variance, like the official code).
    x = torch.randn(2, 4, 5, 5)
    gamma, beta = torch.ones(2, 4), torch.zeros(2, 4)
    out = norm(x, gamma, beta)
    inst = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), keepdim=True) + 1e-5)
    assert torch.allclose(out[:, 0], inst[:, 0], atol=1e-6)


def test_adailn_rho_bounded_after_aggressive_optimisation():
    norm, iln = AdaILN(8), ILN(8)
    opt = torch.optim.SGD([norm.rho, iln.rho], lr=1e4)
    x = torch.randn(2, 8, 6, 6)
    for _ in range(5):
        opt.zero_grad()
        (norm(x, torch.ones(2, 8), torch.zeros(2, 8)).pow(3).sum() + iln(x).pow(3).sum()).backward()
        opt.step()
    for module in (norm, iln):
        for rho in module.rho_weights():
            assert torch.isfinite(rho).all() and rho.min() >= 0 and rho.max() <= 1


def test_iln_starts_close_to_layer_norm():
    rho_in, rho_ln = ILN(3).rho_weights()
    assert torch.allclose(rho_ln, torch.full_like(rho_ln, 1 / (1 + math.exp(-2.2))))


# ----------------------------------------------------------------------------- schedule
def _official_multipliers(iterations: int) -> list[float]:
    """The official loop: before step s (1-based) past iteration//2, lr -= lr0 / (iteration // 2)."""
    lr, half, out = 1.0, iterations // 2, []
    for step in range(1, iterations + 1):
        if step > half:
            lr -= 1.0 / half
        out.append(lr)
    return out


def test_lr_lambda_reproduces_the_official_linear_decay():
    m = methods.build("nicegan_light", device="meta", iterations=10)
    assert m.schedule_unit == "iteration" and m.max_iterations() == 10
    ours = [m.lr_lambda(i) for i in range(10)]
    assert ours == pytest.approx(_official_multipliers(10))
    assert ours[-1] == pytest.approx(0.0)
    paper = methods.build("nicegan", device="meta")
    assert paper.max_iterations() == 300_000
    assert paper.lr_lambda(149_998) == 1.0 and paper.lr_lambda(299_999) == 0.0
    assert paper.lr_lambda(225_000 - 1) == pytest.approx(0.5)
    flat = methods.build("nicegan_light", device="meta", iterations=10, decay_flag=False)
    assert {flat.lr_lambda(i) for i in range(10)} == {1.0}
    early = methods.build("nicegan_light", device="meta", iterations=10, decay_start=8)
    assert [early.lr_lambda(i) for i in (6, 7, 8, 9)] == pytest.approx([1.0, 1.0, 0.5, 0.0])


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", NAMES)
def test_translate_both_directions(name):
    m, batch = _ready(name)
    m.eval()
    s = m.cfg.crop_size
    for direction, x in (("AtoB", batch["A"]), ("BtoA", batch["B"])):
        y = m.translate(x, direction=direction)
        assert y.shape == (1, 3, s, s) and y.abs().max() <= 1
    assert m.two_way and not m.multimodal
    with pytest.raises(UsageError, match="direction"):
        m.translate(batch["A"], direction="AtoA")
    assert set(m.generator_keys()) == {"gen2A", "gen2B", "disA", "disB"}


def test_full_model_needs_its_training_size_but_light_does_not():
    full, _ = _ready("nicegan")
    with pytest.raises(UsageError, match="48"):
        full.translate(torch.zeros(1, 3, 64, 64))
    light, _ = _ready("nicegan_light")
    light.eval()
    assert light.translate(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    m, batch = _ready(name)
    m.train_step(batch)
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)  # a real checkpoint: no tensors shared with the live objects
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    other, _ = _ready(name)
    other.load_state_dict(state)
    for k in m.nets:
        a, b = m.nets[k].state_dict(), other.nets[k].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    m.eval(), other.eval()
    assert torch.equal(m.translate(batch["A"]), other.translate(batch["A"]))
    # Same optimiser state => the next step is identical.
    m.train(), other.train()
    torch.manual_seed(1)
    la = m.train_step(batch)
    torch.manual_seed(1)
    lb = other.train_step(batch)
    assert all(torch.equal(la[k], lb[k]) for k in la)


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="ngf == ndf"):
        methods.build("nicegan_light", device="meta", ngf=32)
    with pytest.raises(ConfigError, match="global head needs >= 96"):
        methods.build("nicegan_light", preset="smoke", crop_size=64, load_size=72)
    assert methods.build("nicegan_light", preset="smoke", crop_size=64, load_size=72, n_dis=6).cfg.n_dis == 6
    with pytest.raises(ConfigError, match="multiple of 4"):
        methods.build("nicegan_light", preset="smoke", crop_size=98, load_size=104)
    with pytest.raises(ConfigError, match="decay_start"):
        methods.build("nicegan_light", device="meta", iterations=10, decay_start=11)


def test_paper_defaults():
    c = methods.get("nicegan").make_config()
    assert (c.lr, c.weight_decay, c.init_type, c.batch_size, c.load_size, c.crop_size) == (1e-4, 1e-4, "none", 1, 286, 256)
    assert (c.adv_weight, c.cycle_weight, c.recon_weight, c.n_res, c.n_dis, c.iterations) == (1, 10, 10, 6, 7, 300_000)
    assert not c.light and methods.get("nicegan_light").make_config().light


def test_generator_alone_matches_light_and_full_shapes():
    z = torch.randn(1, 16, 24, 24)
    assert NICEGenerator(3, 8, 1, 96, light=False)(z).shape == (1, 3, 96, 96)
    assert NICEGenerator(3, 8, 1, 96, light=True)(torch.randn(1, 16, 10, 10)).shape == (1, 3, 40, 40)
