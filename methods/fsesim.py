"""FSeSim and LSeSim: unpaired translation with the spatially-correlative loss on frozen VGG16 features.

Zheng, Cham, Cai. "The Spatially-Correlative Loss for Various Image Translation Tasks", CVPR 2021.
Official code: lyndonzheng/F-LSeSim@6ca7883 (no licence file at that commit). Facts in reference/methods.md
§2.9: anti-aliased ResNet-9 G and PatchGAN D, lsgan, lr 1e-4, image pool 50, frozen ImageNet VGG16
(`netPre`) read at relu3_1, relu4_1, relu4_3 (`attn_layers 4,7,9`), 256 queries, cosine mode with the
top quarter of the translation's similarity row kept and SmoothL1, λ_spatial 10, update order (F) → D → G.
LSeSim (`learned_attn`) adds per-layer learned 1×1 conv heads (`netF`) before the similarity, trained by
an InfoNCE over similarity rows in their own step (the real B image, flipped, supplies negatives).

`netPre` is not trained and is not one of `nets` (not checkpointed, not in the parameter count), like the
official `model_names`. Its ImageNet weights come from torchvision's cache (or `vgg_weights=PATH`), never
from the network; without them `setup` refuses to train unless `allow_random_vgg=true`. The run records
which weights it used in `vgg_weights` (also in `extra_state()` and `describe()`).
Not ported: the official `lambda_perceptual`, `lambda_style` and `lambda_gradient` extras (0 by default)
and the StyleGAN2 nets.

`paper` preset (RECIPE; `bench methods --recipe fsesim|lsesim`): `scripts/train_sc.sh` (written for
horse2zebra; the repository has no other training script): `--model sc --lambda_spatial 10 --attn_layers 4,7,9
--loss_mode cos --gan_mode lsgan --patch_size 64`, which are the code defaults, on every dataset. LSeSim adds
the flags the script leaves commented and the README names for the learned similarity, `--learned_attn
--augment`: `augment` is on, and, as in the official loader, the colour jitter is drawn on the 8-bit training
crop (after its flip) and handed to the step as the extra images `A_aug`/`B_aug` (bench.data). The maintainers
add that the learned version wants `--patch_size 32` (F-LSeSim issue #1); the script's 64 is kept.
Not affected by torch 2.14.1's instance-norm gradient bug (README; benchmarks/instance_norm_gradients.py: equal
generator gradients for FSeSim and LSeSim).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import CheckpointError, ConfigError, UsageError
from methods.base import Method, adam, discriminator_step, set_requires_grad
from methods.config import CUTFamilyConfig
from methods.losses.gan import gan_loss
from methods.losses.spatial import LOSS_MODES, spatial_correlative_loss
from methods.nets.image_pool import ImagePool
from methods.nets.init import init_weights
from methods.nets.patchgan import define_D
from methods.nets.resnet import ResnetGenerator
from methods.nets.vgg import LAYER_NAMES, VGG16Features, imagenet_normalize, resolve_vgg16
from methods.recipes import FLSR, Recipe, Setting, resize_and_crop, resize_test, src

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class FSeSimConfig(CUTFamilyConfig):
    """F-LSeSim@6ca7883 code defaults (options/*.py, models/sc_model.py)."""

    lr: float = 1e-4
    #: F-LSeSim's unaligned_dataset.py keeps the load->crop jitter all along (the comment is there, the code not).
    finetune_no_jitter: bool = False
    pool_size: int = 50
    #: VGG16 slices (0 = relu1_1 ... 12 = relu5_3); 4, 7, 9 = relu3_1, relu4_1, relu4_3.
    attn_layers: tuple[int, ...] = (4, 7, 9)
    #: Query positions per layer (<= 0: all).
    patch_nums: int = 256
    #: Key window side; when >= the feature map the whole map is the key (true at 256² for the defaults).
    patch_size: int = 64
    loss_mode: str = "cos"
    #: L2-normalised features and L1 (True) vs features/√C, tanh similarity and SmoothL1 (False, default).
    use_norm: bool = False
    #: LSeSim: learned 1×1 conv heads trained contrastively.
    learned_attn: bool = False
    #: LSeSim: colour-jittered copies of A and B (made by the loader on the 8-bit crops) as extra
    #: positives/negatives in the head step.
    augment: bool = False
    #: Temperature of the head step's InfoNCE.
    T: float = 0.07
    lambda_spatial: float = 10.0
    lambda_spatial_idt: float = 0.0
    lambda_identity: float = 0.0
    #: Explicit path to torchvision's vgg16-397923af.pth; empty = $TORCH_HOME/hub/checkpoints/.
    vgg_weights: str = ""
    #: Train with a randomly initialised VGG16 when the ImageNet weights are absent (tests, smoke runs).
    allow_random_vgg: bool = False

    CHOICES: ClassVar[dict] = {**CUTFamilyConfig.CHOICES, "loss_mode": LOSS_MODES}

    def validate(self) -> None:
        super().validate()
        bad = [i for i in self.attn_layers if not 0 <= i < len(LAYER_NAMES)]
        if bad or not self.attn_layers:
            raise ConfigError(f"attn_layers {list(self.attn_layers)}: each must be a VGG16 slice 0..12 "
                              f"({', '.join(f'{i}={n}' for i, n in enumerate(LAYER_NAMES))})")
        if len(set(self.attn_layers)) != len(self.attn_layers):
            raise ConfigError(f"attn_layers {list(self.attn_layers)} repeats a layer")
        if self.patch_size < 1:
            raise ConfigError(f"patch_size must be >= 1, got {self.patch_size}")
        if self.pool_size < 0:
            raise ConfigError(f"pool_size must be >= 0, got {self.pool_size}")
        if not self.T > 0:
            raise ConfigError(f"T must be > 0, got {self.T}")
        if self.augment and not self.learned_attn:
            raise ConfigError("augment only feeds LSeSim's head step; set learned_attn=true (method lsesim) or drop it")


@dataclass(frozen=True)
class LSeSimConfig(FSeSimConfig):
    learned_attn: bool = True


class SimilarityHeads(nn.Module):
    """LSeSim's netF: per VGG layer `conv_<i>` = Conv1×1(C→max(32, C/4)) → ReLU → Conv1×1.

    Init normal(0, 0.02): the official SpatialCorrelativeLoss is built without init options, so it gets
    init_net's defaults rather than the run's xavier. Follows F-LSeSim@6ca7883:models/losses.py create_conv.
    """

    def __init__(self, in_channels: Sequence[int]) -> None:
        super().__init__()
        for i, c in enumerate(in_channels):
            out = max(32, c // 4)
            self.add_module(f"conv_{i}", nn.Sequential(nn.Conv2d(c, out, 1), nn.ReLU(), nn.Conv2d(out, out, 1)))
        init_weights(self, "normal", 0.02)

    def forward(self, feat: torch.Tensor, layer: int) -> torch.Tensor:
        """Apply the head of the `layer`-th attention layer."""
        return self.get_submodule(f"conv_{layer}")(feat)


_SCRIPT = "scripts/train_sc.sh"


def _sc_recipe(learned: bool) -> Recipe:
    """scripts/train_sc.sh (+ --learned_attn --augment for LSeSim) on every dataset."""
    common = {}
    if learned:
        common["augment"] = Setting(True, src(FLSR, _SCRIPT, "commented '--learned_attn --augment'; README: "
                                              "'--learned_attn, --augment for the learned self-similarity'"))
    flags = " --learned_attn --augment" if learned else ""
    return Recipe(
        code=FLSR,
        defaults={**resize_and_crop(FLSR, finetune=False, epochs=(200, 200)),
                  "lr": Setting(1e-4, src(FLSR, "options/train_options.py", "--lr")),
                  "pool_size": Setting(50, src(FLSR, "options/train_options.py", "--pool_size")),
                  "lambda_spatial": Setting(10.0, src(FLSR, _SCRIPT, "--lambda_spatial 10")),
                  "attn_layers": Setting((4, 7, 9), src(FLSR, _SCRIPT, "--attn_layers 4,7,9")),
                  "loss_mode": Setting("cos", src(FLSR, _SCRIPT, "--loss_mode cos")),
                  "patch_size": Setting(64, src(FLSR, _SCRIPT, "--patch_size 64")),
                  "augment": Setting(False, src(FLSR, "models/sc_model.py", "--augment store_true"))},
        common=common,
        default_command=src(FLSR, _SCRIPT, f"--model sc --lambda_spatial 10 --attn_layers 4,7,9 --loss_mode cos "
                                           f"--gan_mode lsgan --patch_size 64{flags}"),
        test=resize_test(FLSR),
    )


class FSeSim(Method):
    Config = FSeSimConfig
    citation = "Zheng, Cham, Cai, The Spatially-Correlative Loss for Various Image Translation Tasks, CVPR 2021"
    official_code = "lyndonzheng/F-LSeSim@6ca7883"
    licence = "none stated in the repository"
    # smoke checks the code path offline (`bench run --methods all --preset smoke`): it may fall back to a
    # random VGG16 (recorded as "random"); the ImageNet weights are still used when they are present.
    PRESETS = {"smoke": {"allow_random_vgg": True}}
    RECIPE = _sc_recipe(learned=False)

    def __init__(self, cfg: FSeSimConfig, device="cpu") -> None:
        super().__init__(cfg, device)
        G = ResnetGenerator(3, 3, cfg.ngf, cfg.n_blocks, cfg.norm, False, antialias=cfg.antialias,
                            antialias_up=cfg.antialias_up)
        D = define_D(cfg.netD, 3, cfg.ndf, cfg.n_layers_D, cfg.norm, antialias=cfg.antialias)
        self.nets = {"netG": init_weights(G, cfg.init_type, cfg.init_gain).to(self.device),
                     "netD": init_weights(D, cfg.init_type, cfg.init_gain).to(self.device)}
        if cfg.learned_attn:
            channels = [VGG16Features.channels(i) for i in cfg.attn_layers]
            self.nets["netF"] = SimilarityHeads(channels).to(self.device)
        # Frozen and outside `nets`; the fixed-seed random VGG16 until setup() loads the ImageNet weights.
        self.netPre = VGG16Features().to(self.device)
        #: "torchvision:vgg16-397923af sha256:<hex>" or "random"; None until setup() resolves the weights.
        self.vgg_weights: str | None = None
        self._checkpoint_vgg: str | None = None
        self.fake_B_pool = ImagePool(cfg.pool_size)

    # ----------------------------------------------------------------- setup
    def setup(self, batch):
        """Load the VGG16 ImageNet weights (or refuse), then create the optimisers."""
        self.resolve_vgg()
        self.optimizers = self.make_optimizers()

    def resolve_vgg(self) -> str:
        """Find, verify and load VGG16's ImageNet weights; random only with allow_random_vgg. Returns the record."""
        c = self.cfg
        if self.vgg_weights is None:
            self.vgg_weights = resolve_vgg16(self.netPre, c.vgg_weights, c.allow_random_vgg, self.name or "fsesim")
        self._check_checkpoint_vgg()
        return self.vgg_weights

    def _check_checkpoint_vgg(self) -> None:
        if self._checkpoint_vgg and self.vgg_weights and self._checkpoint_vgg != self.vgg_weights:
            raise CheckpointError(f"the checkpoint was trained with VGG16 weights {self._checkpoint_vgg!r} but this "
                                  f"run has {self.vgg_weights!r}; resume with the same weights")

    def describe(self) -> dict[str, Any]:
        """What this run uses beyond its config: the VGG16 weights and layers of the loss."""
        return {"vgg_weights": self.vgg_weights,
                "vgg_layers": [LAYER_NAMES[i] for i in self.cfg.attn_layers]}

    def make_optimizers(self):
        n = self.nets
        opts = {"G": adam(n["netG"].parameters(), self.cfg), "D": adam(n["netD"].parameters(), self.cfg)}
        if "netF" in n:
            # The official F optimiser also holds VGG16 with lr 0, i.e. VGG16 never moves; we leave it out.
            opts["F"] = adam(n["netF"].parameters(), self.cfg)
        return opts

    @classmethod
    def pipeline_for(cls, cfg):
        """The official loader, plus LSeSim's colour-jittered crops (A_aug, B_aug) with `augment`."""
        return dataclasses.replace(cfg.pipeline, color_jitter=cfg.augment)

    # ----------------------------------------------------------------- losses
    def spatial_loss(self, src: torch.Tensor, tgt: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over attn_layers of the spatially-correlative loss between images `src` and `tgt` in [-1, 1].

        With `other` (LSeSim's head step) it is the InfoNCE with `other` flipped on both axes as negatives.
        Follows F-LSeSim@6ca7883:models/sc_model.py Spatial_Loss.
        """
        c, layers = self.cfg, self.cfg.attn_layers
        with torch.no_grad():  # data images: VGG is frozen, nothing upstream needs their gradient
            f_src = self.netPre(imagenet_normalize(src), layers)
            f_oth = (self.netPre(imagenet_normalize(torch.flip(other, [2, 3])), layers) if other is not None
                     else [None] * len(layers))
        f_tgt = self.netPre(imagenet_normalize(tgt), layers)
        heads = self.nets.get("netF")
        total = 0.0
        for i, (fs, ft, fo) in enumerate(zip(f_src, f_tgt, f_oth)):
            if heads is not None:
                fs, ft = heads(fs, i), heads(ft, i)
                fo = heads(fo, i) if fo is not None else None
            total = total + spatial_correlative_loss(fs, ft, c.patch_nums, c.patch_size, c.loss_mode, c.use_norm,
                                                     fo, c.T)
        return total / len(layers)

    def train_step(self, batch):
        c, n, opt = self.cfg, self.nets, self.optimizers
        if self.vgg_weights is None:
            raise UsageError(f"{self.name or 'fsesim'}: call setup(batch) before train_step (it loads VGG16)")
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        use_idt = c.lambda_identity > 0 or c.lambda_spatial_idt > 0
        nA = real_A.size(0)
        fake = n["netG"](torch.cat((real_A, real_B)) if use_idt else real_A)
        fake_B, idt_B = fake[:nA], fake[nA:] if use_idt else None
        out: dict[str, torch.Tensor] = {}

        # F (LSeSim): contrastive step of the learned heads on the detached translation
        if "netF" in n:
            set_requires_grad(n["netF"], True)
            opt["F"].zero_grad(set_to_none=True)
            src, tgt, oth = real_A, fake_B.detach(), real_B
            if c.augment:
                if "A_aug" not in batch:
                    raise UsageError(f"{self.name} with augment=true needs the loader's colour-jittered crops "
                                     "(batch keys A_aug, B_aug; bench.data makes them from data_pipeline())")
                src = torch.cat((real_A, real_A))
                tgt = torch.cat((tgt, batch["A_aug"].to(self.device)))
                oth = torch.cat((real_B, batch["B_aug"].to(self.device)))
            out["spatial"] = self.spatial_loss(src, tgt, oth)
            out["spatial"].backward()
            opt["F"].step()
            set_requires_grad(n["netF"], False)

        # D
        out["D_real"], out["D_fake"] = discriminator_step(n["netD"], opt["D"], real_B,
                                                          self.fake_B_pool.query(fake_B), c.gan_mode)

        # G
        set_requires_grad(n["netD"], False)
        opt["G"].zero_grad(set_to_none=True)
        zero = torch.zeros((), device=self.device)
        out["G_GAN"] = gan_loss(n["netD"](fake_B), True, c.gan_mode).mean()
        out["G_s"] = self.spatial_loss(real_A, fake_B) * c.lambda_spatial if c.lambda_spatial > 0 else zero
        if c.lambda_spatial_idt > 0:
            out["G_s_idt_B"] = self.spatial_loss(real_B, idt_B) * c.lambda_spatial_idt
        if c.lambda_identity > 0:
            out["idt_B"] = F.l1_loss(idt_B, real_B) * c.lambda_identity
        out["G"] = out["G_GAN"] + out["G_s"] + out.get("G_s_idt_B", zero) + out.get("idt_B", zero)
        out["G"].backward()
        opt["G"].step()
        set_requires_grad(n["netD"], True)
        if "netF" in n:
            set_requires_grad(n["netF"], True)
        return {k: v.detach() for k, v in out.items()}

    # ----------------------------------------------------------------- state
    def extra_state(self):
        # The VGG16 itself is not saved: the record names the file (by sha256) or the fixed-seed random net.
        return {"fake_B_pool": self.fake_B_pool.state_dict(), "vgg_weights": self.vgg_weights}

    def load_extra_state(self, state):
        if not state:
            return
        self.fake_B_pool.load_state_dict(state["fake_B_pool"])
        self._checkpoint_vgg = state.get("vgg_weights")
        self._check_checkpoint_vgg()


class LSeSim(FSeSim):
    Config = LSeSimConfig
    RECIPE = _sc_recipe(learned=True)
