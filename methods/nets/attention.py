"""QS-Attn: query selection by attention entropy and cross-domain value routing, without parameters.

Hu, Zhou, Sun, Wang, Shen, Liu. "QS-Attn: Query-Selected Attention for Contrastive Learning in I2I
Translation", CVPR 2022. On the *source* features X (HW×C, raw encoder features: no projection, no √d)
the attention A = softmax_row(X Xᵀ) (global) or the softmax over each position's k×k neighbours (local)
gives each position a distribution; the positions whose rows have the lowest entropy are the queries.
Their rows of A route the values: A_qs·X for the source and A_qs·Y for the translated image's features Y
(the *source's* attention for both). A is not detached. Layers that are not QS layers keep CUT's random
sampling. `QSAttnSampleF` keeps PatchSampleF's MLP heads and keys (`mlp_<i>.*`), so the parameter
count is CUT's and official checkpoints load.

Efficiency (the official code materialises, and backpropagates through, the whole 4096×4096 matrix of a
64×64 map, several times over): the entropy only ranks rows, so it is computed without autograd, a block
of rows at a time; only the selected rows of A are recomputed with autograd. Rows of a softmax are
independent, so values and gradients equal the official ones. The local variant scores every position
from shifted views of the padded map (the rows of the official `F.unfold`, never materialised) without
autograd and gathers only the selected windows (unfold columns) with autograd.

The official local attention (`networks_local.py`) views `F.unfold`'s channel-major (C·k², L) output as
(L, k², C) and its gathered values as (n, k², C) straight from memory, which mixes channels and window
offsets instead of pairing each query with its neighbours' feature vectors. `local_layout="official"`
reproduces that arithmetic exactly (it is what the published numbers were trained with);
`local_layout="paper"` computes the neighbourhood attention the paper describes.
Ties: the ranking is a stable sort of the rows in a random order (`tie_break="random"`, a private generator
seeded from the run's seed and checkpointed), so rows with equal scores are chosen uniformly at random and the
same seed gives the same choice. It matters: at the paper's size in float32 all 4,096 rows of layer 16's
attention have entropy exactly 0 at initialisation, and a stable sort by position then takes the top 4 rows
of the map as the 256 queries (the official unstable sort picks another arbitrary block). `"position"` is
that stable sort by position.
Follows sapphire497/query-selected-attention@c2c5e40:models/networks_{global,local,local_global}.py
PatchSampleF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from methods.nets.heads import PatchSampleF, flatten_feature, l2_normalize, sample_patch_ids

MODES = ("global", "local", "local_global")
SELECTIONS = ("entropy", "random", "maxmean")
ROUTE_DOMAINS = ("cross", "self")
LOCAL_LAYOUTS = ("official", "paper")
TIE_BREAKS = ("random", "position")
#: Separates the tie-break generator's seed from the run's other streams.
_TIE_STREAM = 0x7135


@dataclass(frozen=True)
class QSAttnOptions:
    """How queries are chosen and features routed on the QS layers (the paper's ablation switches).

    Args:
        mode: attention that selects / routes: global / local / local selects + global routes.
        select: 'entropy' (lowest first), 'random' (Table 3 B/E), 'maxmean' (Informer's max-minus-mean
            measure, largest first; Table 3 F).
        route: route values with the selected attention rows; False samples the raw features at the
            selected positions (Table 3 C).
        route_domain: 'cross' routes both domains with the source's rows; 'self' routes the target with
            its own attention at the same positions (Table 3 D/E).
        window: local window (7 in the code), zero padding window // 2 like `F.unfold(padding=3)`.
        local_layout: 'official' or 'paper' (see the module docstring).
        max_size: maps larger than max_size×max_size are average-pooled to it first (Table 4 model B
            applies QS-Attn to all layers that way; the default QS layers are 64×64 and untouched).
        chunk: rows of the global logits scored at a time (bounds memory, not results).
        tie_break: equal scores ranked in a seeded random order ('random') or by position ('position').
    """

    mode: str = "global"
    select: str = "entropy"
    route: bool = True
    route_domain: str = "cross"
    window: int = 7
    local_layout: str = "official"
    max_size: int = 64
    chunk: int = 1024
    tie_break: str = "random"


# ----------------------------------------------------------------------------- scores
def attention_entropy(attn: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """-Σ p·log p along `dim` for a probability matrix, with 0·log 0 = 0 (the official formula)."""
    logp = torch.log(attn)
    return -(attn * torch.where(torch.isinf(logp), torch.zeros_like(logp), logp)).sum(dim)


def entropy_from_logits(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Entropy of softmax(logits) along `dim`, without a log-probability tensor.

    With s = logits - max (so the largest p is the row's maximum and log Z = -log p_max):
    H = log Z - Σ p·s = -log p_max - Σ p·s. Every term of Σ p·s is <= 0, so nothing cancels and
    near-one-hot rows keep their small entropy; it is ~10x faster on CPU than logsumexp + exp.
    """
    s = logits - logits.amax(dim, keepdim=True)
    p = torch.softmax(s, dim)
    return -torch.log(p.amax(dim)) - (p * s).sum(dim)


def max_mean_measure(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Informer's query sparsity measure: max minus mean of a row of logits (larger = more distinct)."""
    return logits.amax(dim) - logits.mean(dim)


def _rank_score(logits: torch.Tensor, how: str) -> torch.Tensor:
    """A score where *lower* is selected first."""
    if how == "entropy":
        return entropy_from_logits(logits)
    if how == "maxmean":
        return -max_mean_measure(logits)
    raise ValueError(f"no score for selection {how!r}")


@torch.no_grad()
def global_scores(x: torch.Tensor, how: str = "entropy", chunk: int = 1024) -> torch.Tensor:
    """(B, L, C) features -> (B, L) ranking scores of the rows of softmax(X Xᵀ), lower first."""
    xt = x.transpose(1, 2)
    return torch.cat([_rank_score(torch.bmm(x[:, r:r + chunk], xt), how) for r in range(0, x.shape[1], chunk)], 1)


@torch.no_grad()
def local_logits(feat: torch.Tensor, window: int = 7, layout: str = "official") -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, window²) logits of every position against its window's keys.

    Row c·K + o of `F.unfold(feat, window, padding=window // 2)` (K = window²) is channel c shifted by
    window offset o, so the loop runs over the K offsets with shifted views of the padded map instead of
    materialising the (B, C·K, H·W) unfold (205 MB for a 256-channel 64×64 map) — same values, ~4x faster.
    paper: logit o = <x, x shifted by o>; official: the unfold column read as (K, C), i.e. unfold row m
    pairs with channel m mod C of the query and lands in logit m // C.
    """
    B, C, H, W = feat.shape
    K, pad = window * window, window // 2
    padded = F.pad(feat, (pad, pad, pad, pad))
    out = feat.new_zeros(B, K, H, W)
    channels = torch.arange(C, device=feat.device)
    for o in range(K):
        dy, dx = divmod(o, window)
        shifted = padded[:, :, dy:dy + H, dx:dx + W]
        if layout == "paper":
            out[:, o] = (shifted * feat).sum(1)
        else:
            rows = channels * K + o
            out.index_add_(1, rows // C, shifted * feat[:, rows % C])
    return out.flatten(2).transpose(1, 2)


def select_queries(scores: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, L) scores -> (B, k) positions with the lowest scores.

    Ties: with `generator`, each image's positions are visited in a random order (drawn from it, on the CPU)
    before the stable sort, so equal scores are picked uniformly; without, lower positions first.
    """
    if generator is None:
        return torch.sort(scores, dim=1, stable=True).indices[:, :k]
    B, L = scores.shape
    perm = torch.stack([torch.randperm(L, generator=generator) for _ in range(B)]).to(scores.device)
    order = torch.sort(torch.gather(scores, 1, perm), dim=1, stable=True).indices[:, :k]
    return torch.gather(perm, 1, order)


def tie_generator(seed: int) -> torch.Generator:
    """The private CPU generator of the tie-break order, seeded from the run's seed."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + _TIE_STREAM) % (2**63))


def random_queries(batch: int, n_positions: int, k: int, device) -> torch.Tensor:
    """(B, k) random distinct positions per image (the 'random selection' ablation)."""
    return torch.stack([sample_patch_ids(n_positions, k, device) for _ in range(batch)])


# ----------------------------------------------------------------------------- attention rows and routing
def gather_rows(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, L, C), (B, k) -> (B, k, C)."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def global_attention_rows(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows `ids` of softmax(X Xᵀ): (B, k, L), with autograd (only these rows are ever needed)."""
    return torch.softmax(torch.bmm(gather_rows(x, ids), x.transpose(1, 2)), dim=-1)


def gather_windows(feat: torch.Tensor, ids: torch.Tensor, window: int = 7) -> torch.Tensor:
    """The zero-padded window×window neighbourhoods of positions `ids`: (B, k, C, window²).

    Equals `F.unfold(feat, window, padding=window // 2)[:, :, ids]` per image, without unfolding the map.
    """
    B, C, H, W = feat.shape
    pad = window // 2
    Wp = W + 2 * pad
    padded = F.pad(feat, (pad, pad, pad, pad)).flatten(2)  # (B, C, Hp*Wp)
    offsets = (torch.arange(window, device=feat.device)[:, None] * Wp
               + torch.arange(window, device=feat.device)[None, :]).flatten()  # (K,), row-major like unfold
    corner = (ids // W) * Wp + ids % W  # top-left of each window in padded coordinates
    idx = (corner.unsqueeze(-1) + offsets).flatten(1)  # (B, k*K)
    k = ids.shape[1]
    out = torch.gather(padded, 2, idx.unsqueeze(1).expand(B, C, -1))  # (B, C, k*K)
    return out.view(B, C, k, window * window).permute(0, 2, 1, 3)


def local_attention_rows(feat: torch.Tensor, ids: torch.Tensor, window: int = 7,
                         layout: str = "official") -> torch.Tensor:
    """Local attention of positions `ids` over their windows: (B, k, window²), with autograd."""
    B, C = feat.shape[:2]
    k, K = ids.shape[1], window * window
    win = gather_windows(feat, ids, window)  # (B, k, C, K)
    keys = win.transpose(2, 3) if layout == "paper" else win.reshape(B, k, K, C)
    q = gather_rows(flatten_feature(feat), ids)  # (B, k, C)
    return torch.softmax(torch.matmul(keys, q.unsqueeze(-1)).squeeze(-1), dim=-1)


def route_local(feat: torch.Tensor, ids: torch.Tensor, attn: torch.Tensor, window: int = 7,
                layout: str = "official") -> torch.Tensor:
    """Σ_j a_ij · v_j over each selected window: (B, k, C)."""
    B, C = feat.shape[:2]
    k, K = ids.shape[1], window * window
    win = gather_windows(feat, ids, window)  # (B, k, C, K)
    if layout == "paper":
        return torch.matmul(win, attn.unsqueeze(-1)).squeeze(-1)
    # official: the gathered unfold columns (B, C*K, k) read from memory as (B*k, K, C)
    values = win.permute(0, 2, 3, 1).reshape(B * k, K, C)
    return torch.bmm(attn.reshape(B * k, 1, K), values).view(B, k, C)


# ----------------------------------------------------------------------------- one QS layer
def qs_select(feat: torch.Tensor, k: int, opts: QSAttnOptions, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Choose k query positions on source features and their attention rows (None when not routing).

    `generator` breaks ties in the ranking (see select_queries); None ranks ties by position.
    """
    B, C, H, W = feat.shape
    L = H * W
    k = min(k, L)
    x = flatten_feature(feat)
    if opts.select == "random":
        ids = random_queries(B, L, k, feat.device)
    elif opts.mode == "global":
        ids = select_queries(global_scores(x, opts.select, opts.chunk), k, generator)
    else:
        logits = local_logits(feat, opts.window, opts.local_layout)
        ids = select_queries(_rank_score(logits, opts.select), k, generator)
    return ids, (attention_rows(feat, ids, opts) if opts.route else None)


def attention_rows(feat: torch.Tensor, ids: torch.Tensor, opts: QSAttnOptions) -> torch.Tensor:
    """The routing attention of positions `ids` (local rows in 'local' mode, global rows otherwise)."""
    if opts.mode == "local":
        return local_attention_rows(feat, ids, opts.window, opts.local_layout)
    return global_attention_rows(flatten_feature(feat), ids)


def qs_route(feat: torch.Tensor, ids: torch.Tensor, attn: torch.Tensor | None, opts: QSAttnOptions) -> torch.Tensor:
    """Features of one QS layer at the selected queries: routed by `attn`, or raw when attn is None."""
    if attn is None:
        return gather_rows(flatten_feature(feat), ids)
    if opts.mode == "local":
        return route_local(feat, ids, attn, opts.window, opts.local_layout)
    return torch.bmm(attn, flatten_feature(feat))


def shrink(feat: torch.Tensor, max_size: int) -> torch.Tensor:
    """Average-pool maps larger than max_size×max_size down to it (Table 4's all-layer variant)."""
    H, W = feat.shape[2:]
    if H <= max_size and W <= max_size:
        return feat
    return F.adaptive_avg_pool2d(feat, (min(H, max_size), min(W, max_size)))


class QSAttnSampleF(PatchSampleF):
    """PatchSampleF whose QS layers pick queries by attention and route features with the source's rows.

    Call it on the source features first (`patch_ids=None`): it returns samples, ids and attention rows;
    then on the target features with those ids and rows.
    """

    def __init__(self, options: QSAttnOptions, qs_layers: Sequence[int], use_mlp: bool = True, nc: int = 256,
                 init_type: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__(use_mlp=use_mlp, nc=nc, init_type=init_type, init_gain=init_gain)
        self.options = options
        self.qs_layers = frozenset(qs_layers)
        #: Tie-break order of the ranking; seeded from the global seed the run set (torch.initial_seed()).
        self.tie_generator = tie_generator(torch.initial_seed()) if options.tie_break == "random" else None

    def forward(self, feats, num_patches: int = 256, patch_ids=None, attns=None):
        """Returns (list of (B*S, nc) normalised samples, ids per layer, attention rows per layer)."""
        if self.use_mlp and not self.mlp_init:
            self.create_mlp([f.shape[1] for f in feats], device=feats[0].device)
        opts = self.options
        out, ids_out, attn_out = [], [], []
        for i, feat in enumerate(feats):
            if i in self.qs_layers:
                feat = shrink(feat, opts.max_size)
                if patch_ids is None:
                    pid, attn = qs_select(feat, num_patches, opts, self.tie_generator)
                else:
                    pid, attn = patch_ids[i], attns[i]
                    if opts.route and opts.route_domain == "self":
                        attn = attention_rows(feat, pid, opts)
                x = qs_route(feat, pid, attn, opts).flatten(0, 1)
            else:
                flat = flatten_feature(feat)
                pid = patch_ids[i] if patch_ids is not None else sample_patch_ids(flat.shape[1], num_patches, feat.device)
                x, attn = flat[:, pid, :].flatten(0, 1), None
            if self.use_mlp:
                x = self.get_submodule(f"mlp_{i}")(x)
            out.append(l2_normalize(x))
            ids_out.append(pid)
            attn_out.append(attn)
        return out, ids_out, attn_out
