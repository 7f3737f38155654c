"""QS-Attn: entropy ordering, routing with the source's attention, the efficient paths against naive
transcriptions of the official arithmetic, the ablation switches, a training step, official sizes."""

import pytest
import torch
import torch.nn.functional as F

import methods
from bench.errors import ConfigError, UsageError
from methods.nets.attention import (QSAttnOptions, QSAttnSampleF, attention_entropy, entropy_from_logits,
                                    gather_windows, global_scores, local_attention_rows, local_logits,
                                    max_mean_measure, route_local, select_queries)

NAMES = ("qsattn_global", "qsattn_local", "qsattn_local_global")


def make_batch(size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(1, 3, size, size, generator=g) * 2 - 1, "B": torch.rand(1, 3, size, size, generator=g) * 2 - 1,
            "A_paths": ["a"], "B_paths": ["b"]}


def smoke(name, **overrides):
    torch.manual_seed(0)
    m = methods.build(name, preset="smoke", **overrides)
    m.setup(make_batch(m.cfg.crop_size))
    return m


# ----------------------------------------------------------------------------- selection
def test_entropy_ordering_on_a_constructed_attention_matrix():
    """One-hot-like rows are selected first, uniform rows last."""
    L = 6
    attn = torch.full((1, 5, L), 1.0 / L)  # rows 0 and 3 uniform
    attn[0, 1] = torch.tensor([1.0, 0, 0, 0, 0, 0])  # exactly one-hot: entropy 0 (0·log 0 = 0)
    attn[0, 2] = torch.tensor([0.5, 0.5, 0, 0, 0, 0])  # log 2
    attn[0, 4] = torch.tensor([0.9, 0.02, 0.02, 0.02, 0.02, 0.02])
    h = attention_entropy(attn)
    assert h[0, 1] == 0 and torch.isclose(h[0, 2], torch.log(torch.tensor(2.0)))
    assert torch.isclose(h[0, 0], torch.log(torch.tensor(float(L))))
    assert select_queries(h, 5).tolist() == [[1, 4, 2, 0, 3]]  # ties (the uniform rows) by position
    assert select_queries(h, 2).tolist() == [[1, 4]]


def test_entropy_from_logits_matches_the_official_formula():
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 50, dtype=torch.float64) * torch.tensor([0.1, 1.0, 10.0, 100.0, 1e3, 3.0, 0.0],
                                                                      dtype=torch.float64)[None, :, None]
    assert torch.allclose(entropy_from_logits(logits), attention_entropy(logits.softmax(-1)), atol=1e-10)


def test_distinct_positions_have_low_global_entropy():
    """Features: 3 distinct large orthogonal vectors among identical ones -> those 3 rank first."""
    C, L = 8, 20
    x = torch.full((1, L, C), 0.1)
    distinct = [4, 11, 17]
    for j, pos in enumerate(distinct):
        x[0, pos] = 0.0
        x[0, pos, j] = 5.0
    ids = select_queries(global_scores(x, "entropy", chunk=7), 3)
    assert sorted(ids[0].tolist()) == distinct
    # the chunk size bounds memory only
    assert torch.equal(global_scores(x, "entropy", chunk=7), global_scores(x, "entropy", chunk=1000))
    assert sorted(select_queries(global_scores(x, "maxmean"), 3)[0].tolist()) == distinct


def test_max_mean_measure():
    assert max_mean_measure(torch.tensor([[1.0, 2.0, 6.0]])).item() == pytest.approx(3.0)


# ----------------------------------------------------------------------------- efficient == naive
def naive_global(src, tgt, k):
    """The official global arithmetic, written out: full attention, -A log A, sort, rows, bmm."""
    x, y = src.flatten(2).transpose(1, 2), tgt.flatten(2).transpose(1, 2)
    attn = torch.bmm(x, x.transpose(1, 2)).softmax(-1)
    ids = torch.sort(attention_entropy(attn), stable=True).indices[:, :k]
    rows = attn[torch.arange(x.shape[0])[:, None], ids]
    return torch.bmm(rows, x), torch.bmm(rows, y)


def test_global_qs_equals_the_naive_computation_in_values_and_gradients():
    torch.manual_seed(0)
    src = torch.randn(2, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    tgt = torch.randn(2, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    F_ = QSAttnSampleF(QSAttnOptions(mode="global", chunk=4), qs_layers=(0,), use_mlp=False)
    k_pool, ids, attns = F_([src], 7)
    q_pool, _, _ = F_([tgt], 7, ids, attns)
    ref_k, ref_q = naive_global(src, tgt, 7)
    def norm(t):  # PatchSampleF's L2 normalisation (its eps 1e-7 is negligible here)
        return F.normalize(t.flatten(0, 1), dim=1)

    assert torch.allclose(k_pool[0], norm(ref_k), atol=1e-6) and torch.allclose(q_pool[0], norm(ref_q), atol=1e-6)
    w = torch.randn_like(q_pool[0])
    g_ours = torch.autograd.grad((q_pool[0] * w).sum(), (src, tgt))
    g_ref = torch.autograd.grad((norm(ref_q) * w).sum(), (src, tgt))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_ours, g_ref))
    assert g_ours[0].abs().sum() > 0, "the attention is not detached: gradients reach the source features"


def test_windows_and_local_layouts():
    torch.manual_seed(0)
    B, C, H, W, k = 2, 3, 5, 6, 7
    feat = torch.randn(B, C, H, W, dtype=torch.float64)
    ids = torch.tensor([[0, 7, 29], [13, 2, 17]])
    unf = F.unfold(feat, k, padding=3)  # (B, C*49, L)
    assert torch.equal(gather_windows(feat, ids, k).flatten(2), unf[torch.arange(B)[:, None], :, ids])
    # paper layout: logits against the true neighbours (explicit loop over one position)
    padded = F.pad(feat, (3, 3, 3, 3))
    b, pos = 1, 13
    y, x = divmod(pos, W)
    ref = torch.stack([(feat[b, :, y, x] * padded[b, :, y + i, x + j]).sum() for i in range(k) for j in range(k)])
    assert torch.allclose(local_logits(feat, k, "paper")[b, pos], ref)
    # official layout: unfold's (C*49) column read as (49, C), as networks_local.py does
    rows = unf.permute(0, 2, 1).reshape(B, H * W, k * k, C)
    off = torch.matmul(rows, feat.flatten(2).transpose(1, 2).unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(local_logits(feat, k, "official"), off)
    assert not torch.allclose(off, local_logits(feat, k, "paper"))
    a = local_attention_rows(feat, ids, k, "official")
    assert torch.allclose(a, off.softmax(-1)[torch.arange(B)[:, None], ids])
    # official routing: gathered unfold columns (B, C*49, n) read as (B*n, 49, C)
    v = unf[torch.arange(B)[:, None], :, ids].permute(0, 2, 1).reshape(B * 3, k * k, C)
    assert torch.allclose(route_local(feat, ids, a, k, "official").flatten(0, 1), torch.bmm(a.reshape(B * 3, 1, -1), v)[:, 0])
    ap = local_attention_rows(feat, ids, k, "paper")
    win = gather_windows(feat, ids, k)  # (B, n, C, 49)
    assert torch.allclose(route_local(feat, ids, ap, k, "paper"), (win * ap[:, :, None, :]).sum(-1))


# ----------------------------------------------------------------------------- routing switches
@pytest.mark.parametrize("mode", ["global", "local", "local_global"])
def test_target_is_routed_with_the_source_attention(mode):
    torch.manual_seed(0)
    src, tgt = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    F_ = QSAttnSampleF(QSAttnOptions(mode=mode), qs_layers=(0,), use_mlp=False)
    _, ids, attns = F_([src], 5)
    q_cross, _, _ = F_([tgt], 5, ids, attns)
    if mode == "local":
        expected = route_local(tgt, ids[0], attns[0], 7, "official")
    else:
        expected = torch.bmm(attns[0], tgt.flatten(2).transpose(1, 2))
        assert torch.allclose(attns[0].sum(-1), torch.ones(1, 5))
    assert torch.allclose(q_cross[0], F.normalize(expected.flatten(0, 1), dim=1), atol=1e-5)
    self_F = QSAttnSampleF(QSAttnOptions(mode=mode, route_domain="self"), qs_layers=(0,), use_mlp=False)
    q_self, _, _ = self_F([tgt], 5, ids, attns)
    assert not torch.allclose(q_self[0], q_cross[0], atol=1e-3)


def test_no_routing_samples_raw_features_at_the_selected_positions():
    torch.manual_seed(0)
    src, tgt = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    F_ = QSAttnSampleF(QSAttnOptions(route=False), qs_layers=(0,), use_mlp=False)
    _, ids, attns = F_([src], 5)
    q, _, _ = F_([tgt], 5, ids, attns)
    assert attns[0] is None
    assert torch.allclose(q[0], F.normalize(tgt.flatten(2)[0, :, ids[0][0]].T, dim=1), atol=1e-6)
    expected = select_queries(global_scores(src.flatten(2).transpose(1, 2)), 5)
    assert torch.equal(ids[0], expected)


def test_random_selection_ignores_the_entropy():
    torch.manual_seed(0)
    src = torch.randn(1, 4, 8, 8)
    F_ = QSAttnSampleF(QSAttnOptions(select="random"), qs_layers=(0,), use_mlp=False)
    draws = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        draws.append(F_([src], 6)[1][0])
    assert not torch.equal(draws[0], draws[1])
    assert all(len(set(d[0].tolist())) == 6 for d in draws)


def test_only_the_configured_layers_get_qs_attn_and_large_maps_are_pooled():
    torch.manual_seed(0)
    feats = [torch.randn(1, 3, 16, 16), torch.randn(1, 4, 6, 6)]
    F_ = QSAttnSampleF(QSAttnOptions(max_size=8), qs_layers=(0, 1), use_mlp=False)
    _, ids, attns = F_(feats, 5)
    assert attns[0].shape == (1, 5, 64) and attns[1].shape == (1, 5, 36)  # 16x16 pooled to 8x8
    F2 = QSAttnSampleF(QSAttnOptions(), qs_layers=(1,), use_mlp=False)
    _, ids2, attns2 = F2(feats, 5)
    assert attns2[0] is None and ids2[0].dim() == 1  # CUT's random ids, shared across the batch


# ----------------------------------------------------------------------------- the method
@pytest.mark.parametrize("name,mode", list(zip(NAMES, ("global", "local", "local_global"))))
def test_smoke_build_presets_the_mode_and_trains(name, mode):
    m = smoke(name)
    assert m.cfg.qs_mode == mode and m.cfg.qs_layers == (12, 16) and m.cfg.qs_feature_ids == (3, 4)
    before = {k: {n: p.detach().clone() for n, p in net.named_parameters()} for k, net in m.nets.items()}
    losses = m.train_step(make_batch(seed=1))
    assert set(losses) == {"D_real", "D_fake", "G_GAN", "NCE", "NCE_Y", "G"}
    assert all(torch.isfinite(v) and not v.requires_grad for v in losses.values())
    stale = [f"{k}.{n}" for k, net in m.nets.items() for n, p in net.named_parameters() if torch.equal(p, before[k][n])]
    assert not stale, stale
    x = make_batch(seed=2)["A"]
    assert m.translate(x).shape == x.shape
    with pytest.raises(UsageError, match="one-way"):
        m.translate(x, direction="BtoA")


def test_ablation_switches_run_and_state_round_trips():
    m = smoke("qsattn_global", qs_select="random", qs_route=False, num_patches=16, qs_layers=(8, 12, 16), qs_max_size=8)
    assert torch.isfinite(m.train_step(make_batch())["NCE"])
    clone = smoke("qsattn_global", qs_select="random", qs_route=False, num_patches=16, qs_layers=(8, 12, 16), qs_max_size=8)
    clone.load_state_dict(m.state_dict())
    x = make_batch(seed=3)["A"]
    assert torch.equal(m.translate(x), clone.translate(x))
    m = smoke("qsattn_local", qs_local_layout="paper", qs_window=3, qs_route_domain="self")
    assert torch.isfinite(m.train_step(make_batch())["NCE"])


def test_config_validation():
    with pytest.raises(ConfigError, match="qs_layers"):
        methods.build("qsattn_global", qs_layers=(13,))
    with pytest.raises(ConfigError, match="qs_window"):
        methods.build("qsattn_local", qs_window=4)
    with pytest.raises(ConfigError, match="qs_mode"):
        methods.build("qsattn_global", qs_mode="sparse")
    assert methods.build("qsattn_global", preset="smoke", qs_mode="local").cfg.qs_mode == "local"


@pytest.mark.parametrize("name", NAMES)
def test_paper_parameter_count_and_keys_equal_cut(name):
    """Shapes only, so the 256² nets are built on the meta device."""
    with torch.device("meta"):
        m = methods.build(name, device="meta")
        cut = methods.build("cut", device="meta")
        batch = {"A": torch.zeros(1, 3, 256, 256), "B": torch.zeros(1, 3, 256, 256)}
        m.setup(batch)
        cut.setup(batch)
    assert m.parameter_count() == 14_703_300
    for k in ("netG", "netD", "netF"):
        assert {n: v.shape for n, v in m.nets[k].state_dict().items()} == {n: v.shape for n, v in cut.nets[k].state_dict().items()}
    del m, cut


# ----------------------------------------------------------------------------- ties
def _rows(ids: torch.Tensor, width: int = 64) -> torch.Tensor:
    return torch.div(ids, width, rounding_mode="floor")


@pytest.mark.parametrize("mode", ["global", "local", "local_global"])
def test_tied_entropies_give_queries_spread_over_the_whole_map(mode):
    """At 256 px in float32 every row of layer 16 has entropy 0 at init; a stable sort by position then took
    the map's top 4 rows (256 of 64x64). The seeded random order spreads the queries over the map."""
    feat = torch.zeros(1, 8, 64, 64)  # every attention row uniform: all entropies tie
    opts = QSAttnOptions(mode=mode)
    from methods.nets.attention import qs_select, tie_generator

    ids, _ = qs_select(feat, 256, opts, tie_generator(0))
    rows = _rows(ids[0])
    assert len(set(ids[0].tolist())) == 256
    assert rows.min() < 4 and rows.max() > 59 and len(set(rows.tolist())) > 48  # 64 rows, ~4 queries each
    assert abs(rows.float().mean().item() - 31.5) < 4
    by_position, _ = qs_select(feat, 256, opts, None)
    assert _rows(by_position[0]).max() == 3  # the stable sort's block: rows 0-3
    # deterministic per seed, different across seeds
    again, _ = qs_select(feat, 256, opts, tie_generator(0))
    other, _ = qs_select(feat, 256, opts, tie_generator(1))
    assert torch.equal(ids, again) and not torch.equal(ids, other)


def test_tie_break_does_not_change_a_ranking_without_ties():
    scores = torch.randperm(4096).float().view(1, -1) + torch.rand(1, 4096) * 0.5
    from methods.nets.attention import tie_generator

    assert torch.equal(select_queries(scores, 256, tie_generator(3)), select_queries(scores, 256))


def test_tie_order_is_seeded_by_the_run_and_checkpointed():
    a, b = smoke("qsattn_global"), smoke("qsattn_global")  # both built after torch.manual_seed(0)
    ga, gb = a.nets["netF"].tie_generator, b.nets["netF"].tie_generator
    assert torch.equal(ga.get_state(), gb.get_state())
    a.train_step(make_batch(a.cfg.crop_size))
    state = a.state_dict()
    assert not torch.equal(ga.get_state(), gb.get_state())  # the step drew tie orders
    b.load_state_dict(state)
    assert torch.equal(ga.get_state(), gb.get_state())
    assert smoke("qsattn_global", qs_tie_break="position").nets["netF"].tie_generator is None
