"""DCLGAN and SimDCL: loss pieces on hand-checkable cases, the dual NCE wiring, who updates what, presets,
official keys and parameter counts."""

import pytest
import torch
import torch.nn.functional as F

import methods
from bench.errors import ConfigError
from methods.losses.similarity import l1_distance, similarity_loss
from methods.nets.mapping import MappingF, stack_samples

NAMES = ("dclgan", "simdcl")


def make_batch(size=32, bs=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(bs, 3, size, size, generator=g) * 2 - 1,
            "B": torch.rand(bs, 3, size, size, generator=g) * 2 - 1, "A_paths": ["a"] * bs, "B_paths": ["b"] * bs}


def smoke(name, **overrides):
    torch.manual_seed(0)
    m = methods.build(name, preset="smoke", **overrides)
    m.setup(make_batch(m.cfg.crop_size, m.cfg.batch_size))
    return m


def snapshot(m):
    return {k: {n: p.detach().clone() for n, p in net.named_parameters()} for k, net in m.nets.items()}


# ----------------------------------------------------------------------------- loss pieces
def test_similarity_term_by_hand():
    a = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    c = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    assert l1_distance(a, b, "sum").item() == pytest.approx(2.0)
    assert l1_distance(a, b, "mean").item() == pytest.approx(0.5)  # what the code's L1Loss('sum') computes
    # |a-c| = .5+.5+.5+.5 = 2 (sum) -> 0.5 (mean); pairs add up
    assert similarity_loss([(a, b), (a, c)], "sum").item() == pytest.approx(4.0)
    assert similarity_loss([(a, b), (a, c)], "mean").item() == pytest.approx(1.0)
    assert similarity_loss([(a, a)], "sum").item() == 0.0


def test_official_sim_criterion_is_really_a_mean():
    """Why sim_reduction defaults to 'mean': nn.L1Loss('sum') sets the legacy size_average argument."""
    with pytest.warns(UserWarning):
        crit = torch.nn.L1Loss("sum")
    a, b = torch.zeros(1, 64), torch.ones(1, 64)
    assert crit(a, b).item() == l1_distance(a, b, "mean").item() == 1.0


def test_mapping_net_stacks_per_image_and_normalises():
    n_layers, S, nc = 4, 8, 6
    pools = [torch.arange(2 * S * nc, dtype=torch.float32).view(2 * S, nc) + 1000 * i for i in range(n_layers)]
    stack = stack_samples(pools, batch_size=2)
    assert stack.shape == (2, n_layers, S, nc)
    assert torch.equal(stack[1, 2], pools[2][S:])  # image 1, layer 2 = the second half of layer 2's samples
    out = MappingF(n_layers, dim=64)(stack)
    assert out.shape == (2, 64)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError, match="same number of samples"):
        stack_samples([torch.zeros(8, 6), torch.zeros(4, 6)], 1)


def test_mapping_net_keys_and_count_match_official():
    shapes = {k: tuple(v.shape) for k, v in MappingF(4, 64).state_dict().items()}
    assert shapes == {"model.0.weight": (64, 4, 3, 3), "model.0.bias": (64,), "model.4.weight": (64, 64),
                      "model.4.bias": (64,), "model.6.weight": (64, 64), "model.6.bias": (64,)}
    assert sum(p.numel() for p in MappingF(4, 64).parameters()) == 10_688


def test_cosine_nce_equals_dot_nce_on_unit_vectors_and_differs_on_short_ones():
    """DCLGAN's PatchNCE uses cosine similarity: the same as CUT's dot product only for exact unit vectors."""
    m = methods.build("dclgan", preset="smoke")
    torch.manual_seed(0)
    q = [F.normalize(torch.randn(16, 8), dim=1)]
    k = [F.normalize(torch.randn(16, 8), dim=1)]
    dot = methods.build("dclgan", preset="smoke", nce_similarity="dot", nce_includes_all_negatives_from_minibatch=True)
    assert torch.allclose(m.patch_nce(q, k, 1, 1.0), dot.patch_nce(q, k, 1, 1.0), atol=1e-6)
    short = [x * 0.5 for x in q]
    assert torch.allclose(m.patch_nce(short, k, 1, 1.0), m.patch_nce(q, k, 1, 1.0), atol=1e-6)
    assert not torch.allclose(dot.patch_nce(short, k, 1, 1.0), dot.patch_nce(q, k, 1, 1.0), atol=1e-3)


def test_cosine_nce_takes_negatives_from_the_whole_minibatch():
    """With 2 images the official cosine loss compares each query with all 2*S keys."""
    m = methods.build("dclgan", preset="smoke")
    torch.manual_seed(1)
    q = [F.normalize(torch.randn(2 * 5, 8), dim=1)]
    k = [F.normalize(torch.randn(2 * 5, 8), dim=1)]
    logits = q[0] @ k[0].T
    logits.fill_diagonal_(-10.0)
    logits = torch.cat([(q[0] * k[0]).sum(1, keepdim=True), logits], 1) / m.cfg.nce_T
    expected = F.cross_entropy(logits, torch.zeros(10, dtype=torch.long))
    assert torch.allclose(m.patch_nce(q, k, 2, 1.0), expected, atol=1e-5)


# ----------------------------------------------------------------------------- wiring
def test_dual_nce_wiring():
    """NCE1: G_A encodes real A -> F1 picks positions; G_B encodes fake B -> F2 at those positions. NCE2 mirrors."""
    m = smoke("dclgan")
    calls = []
    for name in ("netG_A", "netG_B", "netF1", "netF2"):
        def hook(mod, args, kwargs, out, name=name):
            calls.append((name, args, out))
        m.nets[name].register_forward_hook(hook, with_kwargs=True)
    real_A, real_B = make_batch(32)["A"], make_batch(32, seed=1)["B"]
    fake_B, fake_A = torch.rand_like(real_A), torch.rand_like(real_B)
    m.contrastive_terms(real_A, fake_B, real_B, fake_A)
    order = [c[0] for c in calls]
    assert order == ["netG_B", "netG_A", "netF1", "netF2", "netG_A", "netG_B", "netF2", "netF1"]
    (_, (x_q1, *_), feats_q1), (_, (x_k1, *_), feats_k1) = calls[0], calls[1]
    assert torch.equal(x_q1, fake_B) and torch.equal(x_k1, real_A)
    f1, f2 = calls[2], calls[3]
    assert f1[1][0] is feats_k1 and f1[1][2] is None  # F1 samples G_A(real A) at fresh positions
    assert f2[1][0] is feats_q1 and f2[1][2] is f1[2][1]  # F2 reads G_B(fake B) at F1's positions
    (_, (x_q2, *_), feats_q2), (_, (x_k2, *_), feats_k2) = calls[4], calls[5]
    assert torch.equal(x_q2, fake_A) and torch.equal(x_k2, real_B)
    f2b, f1b = calls[6], calls[7]
    assert f2b[1][0] is feats_k2 and f2b[1][2] is None
    assert f1b[1][0] is feats_q2 and f1b[1][2] is f2b[2][1]


# ----------------------------------------------------------------------------- training step
@pytest.mark.parametrize("name", NAMES)
def test_one_step_updates_who_it_should(name):
    """D's step leaves G and the heads alone; the G step leaves D alone; every optimised tensor moves,
    except D's output bias, whose first hinge gradient is exactly 0 (all outputs inside the margin)."""
    m = smoke(name)
    before = snapshot(m)
    at_step = {}
    for key, opt in m.optimizers.items():
        step = opt.step

        def spy(*a, key=key, step=step, **k):
            out = step(*a, **k)
            at_step[key] = snapshot(m)  # the state right after this optimiser's step
            return out
        opt.step = spy
    losses = m.train_step(make_batch())
    assert set(at_step) == {"G", "D", "F"}
    expected = {"D_A", "D_B", "G_A", "G_B", "NCE1", "NCE2", "idt_A", "idt_B", "G"} | ({"Sim"} if name == "simdcl" else set())
    assert set(losses) == expected and all(torch.isfinite(v) and not v.requires_grad for v in losses.values())
    after = snapshot(m)
    d_nets, other = ("netD_A", "netD_B"), [k for k in m.nets if not k.startswith("netD")]
    for k in other:  # untouched by D's step
        assert all(torch.equal(at_step["D"][k][n], before[k][n]) for n in before[k]), k
    for k in d_nets:  # untouched by the G/F phase
        assert all(torch.equal(after[k][n], at_step["D"][k][n]) for n in after[k]), k
    stale = [f"{k}.{n}" for k in m.nets for n in before[k] if torch.equal(before[k][n], after[k][n])]
    assert stale == ["netD_A.model.14.bias", "netD_B.model.14.bias"], stale
    assert all(p.requires_grad for k in d_nets for p in m.nets[k].parameters())


def test_heads_optimiser_follows_the_code_by_default():
    dcl, sim = smoke("dclgan"), smoke("simdcl")
    assert dcl.optimizers["F"].defaults["lr"] == 1e-3 and dcl.optimizers["F"].defaults["betas"] == (0.9, 0.999)
    assert sim.optimizers["F"].defaults["lr"] == 2e-4 and sim.optimizers["F"].defaults["betas"] == (0.5, 0.999)
    heads = {id(p) for g in sim.optimizers["F"].param_groups for p in g["params"]}
    assert heads == {id(p) for k in ("netF1", "netF2", "netF3", "netF4", "netF5", "netF6") for p in sim.nets[k].parameters()}
    as_g = smoke("dclgan", F_optimizer="as_G")
    assert as_g.optimizers["F"].defaults["lr"] == as_g.cfg.lr and as_g.optimizers["F"].defaults["betas"] == (0.5, 0.999)


def test_presets_paper_is_the_code_paper_text_is_the_pdf():
    code, text = methods.get("dclgan").make_config("paper"), methods.get("dclgan").make_config("paper_text")
    assert (code.lr, code.pool_size, code.F_optimizer, code.gan_mode) == (2e-4, 0, "adam_default", "hinge")
    assert (text.lr, text.pool_size, text.F_optimizer) == (1e-4, 50, "as_G")
    s_code, s_text = methods.get("simdcl").make_config("paper"), methods.get("simdcl").make_config("paper_text")
    assert (s_code.apply_lambda_NCE, s_code.sim_reduction, s_code.lambda_SIM) == (False, "mean", 10.0)
    assert (s_text.apply_lambda_NCE, s_text.sim_reduction, s_text.total_epochs) == (True, "sum", 200)
    with pytest.raises(ConfigError, match="F_optimizer"):
        methods.build("dclgan", F_optimizer="sgd")


def test_simdcl_lambda_nce_option_scales_only_the_nce_terms():
    runs = {}
    for apply in (False, True):
        m = smoke("simdcl", apply_lambda_NCE=apply)
        torch.manual_seed(3)
        runs[apply] = m.train_step(make_batch(seed=4))
    off, on = runs[False], runs[True]
    lam = methods.get("simdcl").Config().lambda_NCE
    assert torch.allclose(on["NCE1"], lam * off["NCE1"], rtol=1e-5) and torch.allclose(on["NCE2"], lam * off["NCE2"], rtol=1e-5)
    assert torch.allclose(on["Sim"], off["Sim"]) and torch.allclose(on["idt_A"], off["idt_A"])
    assert torch.allclose(on["G"] - off["G"], 0.5 * (on["NCE1"] + on["NCE2"] - off["NCE1"] - off["NCE2"]), atol=1e-4)


def test_simdcl_sum_reduction_is_64_times_the_mean_at_batch_1():
    runs = {}
    for red in ("mean", "sum"):
        m = smoke("simdcl", sim_reduction=red)
        torch.manual_seed(3)
        runs[red] = m.train_step(make_batch(seed=4))["Sim"]
    assert torch.allclose(runs["sum"], 64 * runs["mean"], rtol=1e-4)


def test_simdcl_runs_with_a_batch_of_two_and_refuses_too_few_positions():
    m = smoke("simdcl", batch_size=2)
    assert torch.isfinite(m.train_step(make_batch(bs=2))["Sim"])
    m = methods.build("simdcl", preset="smoke", num_patches=128)  # layers 12/16 have 8x8 = 64 positions at 32 px
    with pytest.raises(ConfigError, match="num_patches"):
        m.setup(make_batch())


def test_image_pool_and_round_trip():
    m = smoke("dclgan", pool_size=3)
    for i in range(2):
        m.train_step(make_batch(seed=i))
    state = m.state_dict()
    assert len(state["extra"]["fake_B_pool"]["images"]) == 2
    clone = smoke("dclgan", pool_size=3)
    clone.load_state_dict(state)
    assert len(clone.fake_A_pool.images) == 2
    x = make_batch(seed=9)
    m.eval(), clone.eval()
    for d in ("AtoB", "BtoA"):
        assert torch.equal(m.translate(x["A"], direction=d), clone.translate(x["A"], direction=d))
    assert not torch.equal(m.translate(x["A"], direction="AtoB"), m.translate(x["A"], direction="BtoA"))


@pytest.mark.parametrize("name", NAMES)
def test_smoke_build_translates_both_ways(name):
    m = smoke(name)
    assert m.two_way and m.generator_keys() == ["netG_A", "netG_B"]
    x = make_batch()["A"]
    assert m.translate(x).shape == x.shape and m.translate(x, direction="BtoA").shape == x.shape
    assert not m.data_jitter(m.cfg.n_epochs + 1) and m.data_jitter(m.cfg.n_epochs)


# ----------------------------------------------------------------------------- official sizes
@pytest.mark.parametrize("name,total", [("dclgan", 29_272_968), ("simdcl", 29_315_720)])
def test_paper_parameter_counts_and_head_keys(name, total):
    """Shapes only, so the 256² nets are built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        m = methods.build(name, device="meta")
        m.setup({"A": torch.zeros(1, 3, 256, 256), "B": torch.zeros(1, 3, 256, 256)})
    assert m.parameter_count() == total
    assert m.parameter_count(["netG_A"]) == 11_378_179 and m.parameter_count(["netD_B"]) == 2_764_737
    heads = {k: tuple(v.shape) for k, v in m.nets["netF2"].state_dict().items()}
    widths = (128, 256, 256, 256)  # nce_layers 4, 8, 12, 16
    assert heads == {f"mlp_{i}.{j}.{w}": s for i, c in enumerate(widths)
                     for j, w, s in ((0, "weight", (256, c)), (0, "bias", (256,)), (2, "weight", (256, 256)), (2, "bias", (256,)))}
    del m
