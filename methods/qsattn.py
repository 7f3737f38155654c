"""QS-Attn (global, local, local+global): CUT whose deepest NCE layers choose their queries by attention.

Hu, Zhou, Sun, Wang, Shen, Liu. "QS-Attn: Query-Selected Attention for Contrastive Learning in I2I
Translation", CVPR 2022. Official code: sapphire497/query-selected-attention@c2c5e40 (no licence file).
Everything is CUT (methods/cut.py, reference/methods.md §2.4, §2.6): the same nets (14,703,300 parameters,
QS-Attn adds none), lsgan, λ_NCE=1 with identity NCE, nce_layers 0,4,8,12,16, 256 patches, τ=0.07,
lr 2e-4, 200+200 epochs, pool 0, xavier(0.02), D then G+F, no jitter in the decay phase. Only the
sampling of the QS layers changes (methods/nets/attention.py): on the last two NCE layers (12 and 16, the
official `feat_id >= 3`) the 256 positions whose source-attention rows have the lowest entropy become the
queries, and those rows route both the source and the translated features.

`paper` preset (RECIPE; `bench methods --recipe qsattn_global`): the README's
`python train.py --dataroot=datasets/horse2zebra --name=horse2zebra_global --QS_mode=global` (the mode per
registry name), i.e. the code defaults, on every dataset; the repository has no per-dataset scripts.

Ablation switches (paper Tables 3-5): `qs_select` entropy | random | maxmean, `qs_route` (off: raw
features at the selected positions), `qs_route_domain` cross | self, `num_patches` (queries: 64/128/
256/512), `qs_layers` (generator layers that get QS-Attn; all five with `qs_max_size` pooling is Table 4
model B), `qs_window` (local window, 7). The three registry names only preset `qs_mode`.

Differences from the official code, deliberately: it runs on CPU (the official `create_mlp` calls
`.cuda()` and `data_dependent_initialize` divides by the number of GPUs); the unused extra encoder pass of
its `forward` is skipped (no RNG is drawn there, so results are unaffected), and the source's features
come from the pass that made the fakes (CUT's `nce_reuse_source_features`: the attention is not detached, so
the official code backpropagates through a second encoder pass of the source; here that gradient joins the
fakes' pass: same values, and 1.07x instead of 1.30x CUT's time per step at 256 px on CPU); the entropy ranks rows
without autograd and only the selected rows are recomputed with it (same values and gradients, far less
memory). Ties in the entropy are broken in a seeded random order (`qs_tie_break=random`, default; the
official unstable sort picks an arbitrary, device-dependent order; bench's earlier stable sort took the top
rows of the map: at 256 px in float32 every row of layer 16 has entropy exactly 0 at initialisation, so that
chose the map's first 4 rows); `qs_tie_break=position` keeps that stable sort. `qs_local_layout=official` (default)
keeps the official local attention's channel/offset mixing, `paper` computes true neighbourhood attention.
Checked against the official PatchSampleF of all three modes (float64, same MLP weights and seed, batch 1
and 2): equal samples and equal gradients on source and target features; and against the official QSModel
(64 px, one step): equal losses. (On torch >= 2 the official local module fails at batch size 1: its
`.view` of the gathered values needs `.reshape`.)
On torch 2.14.1 (CPU) the official code's generator gradients are wrong in the global and local+global modes
(plain nn.InstanceNorm2d at batch size 1 receives PatchNCE's channels_last-strided gradient; README, measured by
benchmarks/instance_norm_gradients.py: relative error 1.12 and 1.22 at 128 px, ngf 32) and right in the local
mode (2.3e-6; 4.4e-3 at 64 px, ngf 16); bench's instance norms make the gradient contiguous, so a side-by-side
comparison on this torch must patch the official side for global and local+global.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench.errors import ConfigError
from methods.cut import CUT, CUTConfig
from methods.losses.patchnce import multilayer_patch_nce
from methods.nets.attention import (LOCAL_LAYOUTS, MODES, ROUTE_DOMAINS, SELECTIONS, TIE_BREAKS, QSAttnOptions,
                                    QSAttnSampleF)
from methods.recipes import QSR, Recipe, Setting, resize_and_crop, resize_test, src


@dataclass(frozen=True)
class QSAttnConfig(CUTConfig):
    qs_mode: str = "global"
    qs_select: str = "entropy"
    qs_route: bool = True
    qs_route_domain: str = "cross"
    #: Generator layers (members of nce_layers) whose samples come from QS-Attn; the rest stay random.
    qs_layers: tuple[int, ...] = (12, 16)
    qs_window: int = 7
    qs_local_layout: str = "official"
    #: QS layers with larger maps are average-pooled to this size first (only matters for qs_layers
    #: below 12, Table 4 model B; the paper's number is lost in our copy, 64 = the size of layers 12/16).
    qs_max_size: int = 64
    #: Equal entropies ranked in a seeded random order (random) or by position (position: a stable sort).
    qs_tie_break: str = "random"

    CHOICES: ClassVar[dict] = {**CUTConfig.CHOICES, "qs_mode": MODES, "qs_select": SELECTIONS,
                               "qs_route_domain": ROUTE_DOMAINS, "qs_local_layout": LOCAL_LAYOUTS,
                               "qs_tie_break": TIE_BREAKS}

    def validate(self) -> None:
        super().validate()
        stray = [i for i in self.qs_layers if i not in self.nce_layers]
        if stray or not self.qs_layers:
            raise ConfigError(f"qs_layers {list(self.qs_layers)}: each must be one of nce_layers {list(self.nce_layers)}")
        if self.qs_window < 1 or self.qs_window % 2 == 0:
            raise ConfigError(f"qs_window must be an odd number >= 1, got {self.qs_window}")
        if self.qs_max_size < 1:
            raise ConfigError(f"qs_max_size must be >= 1, got {self.qs_max_size}")

    @property
    def qs_options(self) -> QSAttnOptions:
        return QSAttnOptions(mode=self.qs_mode, select=self.qs_select, route=self.qs_route,
                             route_domain=self.qs_route_domain, window=self.qs_window,
                             local_layout=self.qs_local_layout, max_size=self.qs_max_size,
                            tie_break=self.qs_tie_break)

    @property
    def qs_feature_ids(self) -> tuple[int, ...]:
        """Positions of the QS layers in the list of NCE features."""
        return tuple(self.nce_layers.index(i) for i in self.qs_layers)


def _qs_recipe(mode: str) -> Recipe:
    """The README's command with --QS_mode=mode: the code defaults on every dataset."""
    return Recipe(
        code=QSR,
        defaults={**resize_and_crop(QSR, finetune=True, epochs=(200, 200)),
                  "lr": Setting(2e-4, src(QSR, "options/train_options.py", "--lr")),
                  "lambda_NCE": Setting(1.0, src(QSR, "models/qs_model.py", "--lambda_NCE")),
                  "nce_idt": Setting(True, src(QSR, "models/qs_model.py", "--nce_idt")),
                  "qs_mode": Setting(mode, src(QSR, "models/qs_model.py", f"--QS_mode {mode}"))},
        default_command=f"python train.py --dataroot=datasets/<dataset> --QS_mode={mode} (README; code defaults)",
        test=resize_test(QSR),
    )


class QSAttn(CUT):
    Config = QSAttnConfig
    citation = ("Hu et al., QS-Attn: Query-Selected Attention for Contrastive Learning in I2I Translation, "
                "CVPR 2022")
    official_code = "sapphire497/query-selected-attention@c2c5e40"
    licence = "none (the official repository has no licence file)"
    RECIPE = _qs_recipe("global")

    def __init__(self, cfg: QSAttnConfig, device="cpu") -> None:
        super().__init__(cfg, device)
        self.nets["netF"] = QSAttnSampleF(cfg.qs_options, cfg.qs_feature_ids, use_mlp=cfg.netF == "mlp_sample",
                                          nc=cfg.netF_nc, init_type=cfg.init_type,
                                          init_gain=cfg.init_gain).to(self.device)

    def extra_state(self):
        gen = self.nets["netF"].tie_generator
        return {**super().extra_state(), **({"qs_tie_rng": gen.get_state()} if gen is not None else {})}

    def load_extra_state(self, state):
        super().load_extra_state(state)
        gen = self.nets["netF"].tie_generator
        if gen is not None and "qs_tie_rng" in (state or {}):
            gen.set_state(state["qs_tie_rng"])

    def nce_loss(self, src, tgt, flipped, feat_k=None):
        """PatchNCE with QS-Attn sampling: queries and attention come from `src`, reused for `tgt`."""
        c, F = self.cfg, self.nets["netF"]
        feat_q, feat_k = self.nce_features(src, tgt, flipped, feat_k)
        k_pool, ids, attns = F(feat_k, c.num_patches, None)
        q_pool, _, _ = F(feat_q, c.num_patches, ids, attns)
        return multilayer_patch_nce(q_pool, k_pool, src.shape[0], c.lambda_NCE, c.nce_T,
                                    c.nce_includes_all_negatives_from_minibatch)


@dataclass(frozen=True)
class QSAttnLocalConfig(QSAttnConfig):
    qs_mode: str = "local"


@dataclass(frozen=True)
class QSAttnLocalGlobalConfig(QSAttnConfig):
    qs_mode: str = "local_global"


class QSAttnGlobal(QSAttn):
    Config = QSAttnConfig


class QSAttnLocal(QSAttn):
    Config = QSAttnLocalConfig
    RECIPE = _qs_recipe("local")


class QSAttnLocalGlobal(QSAttn):
    Config = QSAttnLocalGlobalConfig
    RECIPE = _qs_recipe("local_global")
