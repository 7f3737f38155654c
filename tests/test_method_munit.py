"""MUNIT: official keys and parameter counts, init, losses, the step schedule, random styles, and the Method
contract at smoke size."""

from __future__ import annotations

import io
import time
import warnings

import pytest
import torch

import methods
from bench.errors import ConfigError, UsageError
from methods.nets.munit import AdaINGen, LayerNorm, min_image_size


def _batch(size: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(1, 3, size, size, generator=g) * 2 - 1,
            "B": torch.rand(1, 3, size, size, generator=g) * 2 - 1}


def _ready(**overrides):
    torch.manual_seed(0)
    m = methods.build("munit", preset="smoke", **overrides)
    batch = _batch(m.cfg.crop_size)
    m.setup(batch)
    m.train()
    return m, batch


def _params(net) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in net.named_parameters()}


def _changed(before: dict, net) -> set[str]:
    return {k for k, p in net.named_parameters() if not torch.equal(before[k], p.detach())}


# ----------------------------------------------------------------------------- architecture
def test_parameter_counts_match_official():
    m = methods.build("munit", device="meta")
    assert m.parameter_count() == 46_594_716
    assert m.parameter_count(["gen_a"]) == m.parameter_count(["gen_b"]) == 15_026_187
    assert m.parameter_count(["dis_a"]) == m.parameter_count(["dis_b"]) == 8_271_171
    gen = m.nets["gen_a"]
    parts = {k: sum(p.numel() for p in getattr(gen, k).parameters()) for k in ("enc_style", "enc_content", "dec", "mlp")}
    assert parts == {"enc_style": 2_764_936, "enc_content": 5_385_856, "dec": 5_754_627, "mlp": 1_120_768}


def test_state_dict_keys_and_shapes_are_official():
    m = methods.build("munit", device="meta")
    assert set(m.nets) == {"gen_a", "gen_b", "dis_a", "dis_b"}
    g, d = m.nets["gen_a"].state_dict(), m.nets["dis_a"].state_dict()
    assert (len(g), len(d)) == (82, 30)  # counted on the official classes with the summer2winter config
    expected = {"enc_style.model.0.conv.weight": (64, 3, 7, 7), "enc_style.model.4.conv.weight": (256, 256, 4, 4),
                "enc_style.model.6.weight": (8, 256, 1, 1), "enc_content.model.2.conv.weight": (256, 128, 4, 4),
                "enc_content.model.3.model.3.model.1.conv.weight": (256, 256, 3, 3),
                "dec.model.0.model.0.model.0.norm.running_mean": (256,), "dec.model.2.norm.gamma": (128,),
                "dec.model.4.conv.weight": (64, 128, 5, 5), "dec.model.5.conv.weight": (3, 64, 7, 7),
                "mlp.model.0.fc.weight": (256, 8), "mlp.model.2.fc.weight": (4096, 256)}
    for key, shape in expected.items():
        assert tuple(g[key].shape) == shape, key
    assert tuple(d["cnns.0.0.conv.weight"].shape) == (64, 3, 4, 4)
    assert tuple(d["cnns.2.3.conv.weight"].shape) == (512, 256, 4, 4)
    assert tuple(d["cnns.2.4.weight"].shape) == (1, 512, 1, 1)


def test_discriminator_has_three_scales_and_smallest_size():
    m, batch = _ready()
    outs = m.nets["dis_a"](batch["A"])
    assert [tuple(o.shape) for o in outs] == [(1, 1, 4, 4), (1, 1, 2, 2), (1, 1, 1, 1)]
    assert min_image_size(4, 3) == 64 and min_image_size(3, 3) == 32


def test_init_kaiming_for_generators_gaussian_for_discriminators():
    torch.manual_seed(0)
    m = methods.build("munit", preset="smoke", ngf=32, ndf=32)
    conv = m.nets["gen_a"].enc_content.model[2].conv  # 64 -> 128 channels, 4×4: fan_in 1024
    assert conv.weight.std().item() == pytest.approx((2 / 1024) ** 0.5, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0
    assert m.nets["gen_a"].mlp.model[0].fc.weight.std().item() == pytest.approx((2 / 8) ** 0.5, rel=0.1)
    dis = m.nets["dis_b"].cnns[0][2].conv  # 64 -> 128
    assert dis.weight.std().item() == pytest.approx(0.02, rel=0.05)
    lns = [mod for mod in m.nets["gen_b"].modules() if isinstance(mod, LayerNorm)]
    assert lns and all(0 <= ln.gamma.min() and ln.gamma.max() < 1 for ln in lns)  # official uniform_() init


# ----------------------------------------------------------------------------- training
def test_one_step_updates_every_parameter_with_finite_losses():
    m, batch = _ready()
    before = {k: _params(net) for k, net in m.nets.items()}
    losses = m.train_step(batch)
    names = {"dis_a", "dis_b", "dis_total", "gen_adv_a", "gen_adv_b", "gen_recon_x_a", "gen_recon_x_b",
             "gen_recon_s_a", "gen_recon_s_b", "gen_recon_c_a", "gen_recon_c_b", "gen_cycrecon_x_a",
             "gen_cycrecon_x_b", "gen_total"}
    assert set(losses) == names
    assert all(torch.isfinite(v) and v.dim() == 0 and not v.requires_grad for v in losses.values())
    for k, net in m.nets.items():
        unchanged = set(before[k]) - _changed(before[k], net)
        assert not unchanged, f"{k}: {sorted(unchanged)}"


def test_total_losses_use_the_config_weights():
    m, batch = _ready(gan_w=2.0, recon_x_w=3.0, recon_s_w=0.5, recon_c_w=0.25, recon_x_cyc_w=4.0)
    L = m.train_step(batch)
    expected = (2 * (L["gen_adv_a"] + L["gen_adv_b"]) + 3 * (L["gen_recon_x_a"] + L["gen_recon_x_b"])
                + 0.5 * (L["gen_recon_s_a"] + L["gen_recon_s_b"]) + 0.25 * (L["gen_recon_c_a"] + L["gen_recon_c_b"])
                + 4 * (L["gen_cycrecon_x_a"] + L["gen_cycrecon_x_b"]))
    assert L["gen_total"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert L["dis_total"].item() == pytest.approx(2 * (L["dis_a"] + L["dis_b"]).item(), rel=1e-5)


def test_each_update_touches_only_its_own_nets():
    m, batch = _ready(weight_decay=0.0)
    snap = {k: _params(net) for k, net in m.nets.items()}
    m.step_D(batch["A"], batch["B"])
    assert not _changed(snap["gen_a"], m.nets["gen_a"]) and not _changed(snap["gen_b"], m.nets["gen_b"])
    assert _changed(snap["dis_a"], m.nets["dis_a"]) and _changed(snap["dis_b"], m.nets["dis_b"])
    snap = {k: _params(net) for k, net in m.nets.items()}
    d_params = [p for k in ("dis_a", "dis_b") for p in m.nets[k].parameters()]
    d_grads = [p.grad.clone() for p in d_params]
    m.step_G(batch["A"], batch["B"])
    assert not _changed(snap["dis_a"], m.nets["dis_a"]) and not _changed(snap["dis_b"], m.nets["dis_b"])
    # The generator step neither computes gradients for D nor leaves it frozen.
    assert all(torch.equal(p.grad, g) and p.requires_grad for p, g in zip(d_params, d_grads))
    assert _changed(snap["gen_a"], m.nets["gen_a"]) and _changed(snap["gen_b"], m.nets["gen_b"])


def test_optimisers_are_official():
    m, _ = _ready()
    for key in ("gen", "dis"):
        group = m.optimizers[key].param_groups[0]
        assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-4, (0.5, 0.999), 1e-4)


def test_smoke_preset_step_is_fast():
    m, batch = _ready()
    assert m.cfg.crop_size == 64 and (m.cfg.n_layer, m.cfg.num_scales) == (4, 3)  # paper depth, toy width
    m.train_step(batch)  # warm-up
    start = time.process_time()  # CPU time of one thread (see _one_thread)
    m.train_step(batch)
    cpu = time.process_time() - start
    assert cpu < 2.0, f"munit smoke step took {cpu:.2f} s of CPU"


# ----------------------------------------------------------------------------- schedule
def test_lr_lambda_reproduces_official_step_schedule():
    m = methods.build("munit", device="meta", step_size=3, iterations=10)
    assert m.schedule_unit == "iteration" and m.max_iterations() == 10
    # Official loop: scheduler.step() at the top of every iteration, then the update.
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    official = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about this order; it is the official one
        for _ in range(10):
            sched.step()
            official.append(opt.param_groups[0]["lr"])
    assert [m.lr_lambda(i) for i in range(10)] == pytest.approx(official)
    paper = methods.build("munit", device="meta")
    assert paper.max_iterations() == 1_000_000
    assert [paper.lr_lambda(i) for i in (0, 99_998, 99_999, 999_999)] == pytest.approx([1, 1, 0.5, 0.5**10])


# ----------------------------------------------------------------------------- multimodal contract
def test_random_styles_give_different_outputs_and_a_fixed_style_is_deterministic():
    m, batch = _ready()
    m.train_step(batch)
    m.eval()
    assert m.multimodal and m.two_way
    z = m.sample_z(2, generator=torch.Generator().manual_seed(3))
    assert z.shape == (2, 8)
    assert torch.equal(z, m.sample_z(2, generator=torch.Generator().manual_seed(3)))
    x = batch["A"]
    y0, y1 = m.translate(x, z[:1]), m.translate(x, z[1:])
    assert (y0 - y1).abs().max() > 1e-3, "different styles must give different outputs"
    assert torch.equal(y0, m.translate(x, z[:1].view(1, 8, 1, 1)))  # (n, 8, 1, 1) accepted too
    r0, r1 = m.translate(x), m.translate(x)
    assert (r0 - r1).abs().max() > 1e-3, "z=None must draw a new random style"


def test_translate_both_directions_and_shape_errors():
    m, batch = _ready()
    m.eval()
    for direction, x in (("AtoB", batch["A"]), ("BtoA", batch["B"])):
        y = m.translate(x, direction=direction)
        assert y.shape == x.shape and y.abs().max() <= 1
    with pytest.raises(UsageError, match="style codes"):
        m.translate(batch["A"], torch.zeros(1, 4))
    with pytest.raises(UsageError, match="direction"):
        m.translate(batch["A"], direction="BtoB")
    assert m.encode_style(batch["B"], "B").shape == (1, 8)
    assert m.generator_keys() == ["gen_a", "gen_b"]


def test_decoder_uses_the_style_through_adain():
    torch.manual_seed(0)
    gen = AdaINGen(3, 8, 8, 2, 1, "relu", "reflect", 16)
    content = torch.randn(1, 32, 8, 8)
    a = gen.decode(content, torch.zeros(1, 8, 1, 1))
    b = gen.decode(content, torch.ones(1, 8, 1, 1))
    assert a.shape == (1, 3, 32, 32) and not torch.allclose(a, b)


def test_state_dict_round_trip():
    m, batch = _ready()
    m.train_step(batch)
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)  # a real checkpoint: no tensors shared with the live objects
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    other, _ = _ready()
    other.load_state_dict(state)
    for k in m.nets:
        a, b = m.nets[k].state_dict(), other.nets[k].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    m.eval(), other.eval()
    z = m.sample_z(1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m.translate(batch["A"], z), other.translate(batch["A"], z))
    m.train(), other.train()
    torch.manual_seed(5)
    la = m.train_step(batch)
    torch.manual_seed(5)
    lb = other.train_step(batch)
    assert all(torch.equal(la[k], lb[k]) for k in la)


# ----------------------------------------------------------------------------- config
def test_paper_defaults():
    c = methods.get("munit").make_config()
    assert (c.lr, c.weight_decay, c.beta1, c.beta2, c.init_type, c.init_type_D) == (1e-4, 1e-4, 0.5, 0.999, "kaiming", "normal")
    assert (c.gan_w, c.recon_x_w, c.recon_s_w, c.recon_c_w, c.recon_x_cyc_w) == (1, 10, 1, 1, 10)
    assert (c.style_dim, c.mlp_dim, c.n_downsample, c.n_res, c.ngf, c.ndf) == (8, 256, 2, 4, 64, 64)
    assert (c.n_layer, c.num_scales, c.gan_mode, c.iterations, c.step_size, c.gamma) == (4, 3, "lsgan", 1_000_000, 100_000, 0.5)


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="needs >= 64 px"):
        methods.build("munit", preset="smoke", crop_size=32, load_size=32)
    assert methods.build("munit", preset="smoke", crop_size=32, load_size=32, n_layer=3).cfg.n_layer == 3
    with pytest.raises(ConfigError, match="divisible"):
        methods.build("munit", preset="smoke", crop_size=66, load_size=66)
    with pytest.raises(ConfigError, match="gan_mode"):
        methods.build("munit", device="meta", gan_mode="hinge")


# ----------------------------------------------------------------------------- per-dataset configs, VGG loss
def test_dataset_configs_switch_the_cycle_and_vgg_losses():
    """edges2* configs have no cycle loss (maps, facades); synthia2cityscape adds the VGG loss."""
    cls = methods.get("munit")
    for dataset in ("maps", "facades"):
        c = cls.make_config("paper", dataset=dataset)
        assert (c.recon_x_cyc_w, c.vgg_w) == (0.0, 0.0)
    c = cls.make_config("paper", dataset="cityscapes")
    assert (c.recon_x_cyc_w, c.vgg_w, c.load_size, c.crop_size) == (10.0, 1.0, 256, 256)
    for dataset in ("horse2zebra", "afhq", None):
        c = cls.make_config("paper", dataset=dataset)
        assert (c.recon_x_cyc_w, c.vgg_w) == (10.0, 0.0)
    m = methods.build("munit", preset="smoke", dataset="facades")
    m.setup(None)
    losses = m.train_step(_batch(m.cfg.crop_size))
    assert losses["gen_cycrecon_x_a"] == 0 and "gen_vgg_a" not in losses


def test_vgg_loss_reads_relu5_3_without_pool4_and_joins_the_total(tmp_path, monkeypatch):
    from methods.munit import munit_vgg_features, vgg_loss
    from methods.nets.vgg import VGG16Features, imagenet_normalize

    vgg = VGG16Features()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert munit_vgg_features(vgg, x).shape == (1, 512, 8, 8)  # torchvision's relu5_3 would be 4x4
    assert vgg_loss(vgg, x, x, imagenet_normalize) == 0
    assert vgg_loss(vgg, x, x.flip(-1), imagenet_normalize) > 0
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    m = methods.build("munit", preset="smoke", dataset="cityscapes")
    assert m.cfg.vgg_w == 1.0 and m.cfg.allow_random_vgg
    m.setup(None)
    assert m.describe() == {"vgg_weights": "random"}
    L = m.train_step(_batch(m.cfg.crop_size))
    assert L["gen_vgg_a"] > 0 and L["gen_vgg_b"] > 0
    strict = methods.build("munit", preset="smoke", dataset="cityscapes", allow_random_vgg=False)
    with pytest.raises(ConfigError, match="VGG16"):
        strict.setup(None)


def test_munit_vgg16_weight_file_loads_with_caffe_preprocessing(tmp_path):
    from methods.nets.vgg import MUNIT_VGG_KEYS, VGG16Features, caffe_preprocess

    ref = VGG16Features()
    convs = [m for m in ref.modules() if isinstance(m, torch.nn.Conv2d)]
    torch.manual_seed(4)
    state = {}
    for key, conv in zip(MUNIT_VGG_KEYS, convs):
        state[f"{key}.weight"], state[f"{key}.bias"] = torch.randn_like(conv.weight), torch.randn_like(conv.bias)
    path = tmp_path / "vgg16.weight"
    torch.save(state, path)
    m = methods.build("munit", preset="smoke", dataset="cityscapes", vgg_weights=str(path))
    m.setup(None)
    assert m.vgg_weights.startswith("munit:vgg16.weight sha256:")
    assert m._vgg_preprocess() is caffe_preprocess
    got = [mod for mod in m.vgg.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert torch.equal(got[0].weight, state["conv1_1.weight"]) and torch.equal(got[-1].bias, state["conv5_3.bias"])
    black = caffe_preprocess(-torch.ones(1, 3, 2, 2))
    assert torch.allclose(black[0, :, 0, 0], -torch.tensor([103.939, 116.779, 123.680]))


def test_crop_multiple_follows_n_downsample():
    """The crop must survive the content encoder's n_downsample halvings, not the ResNet generators' fixed 2:
    n_downsample 0 or 1 takes crops that are not multiples of 4 (they were refused), 3 needs multiples of 8."""
    config = methods.get("munit").Config
    small = dict(load_size=30, n_layer=1, num_scales=1)
    assert config(crop_size=30, n_downsample=0, **small).crop_size == 30
    assert config(crop_size=30, n_downsample=1, **small).crop_size == 30
    with pytest.raises(ConfigError, match="crop_size=36: must be a multiple of 8"):
        config(crop_size=36, load_size=36, n_downsample=3, n_layer=1, num_scales=1)
