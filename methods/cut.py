"""CUT and FastCUT: contrastive unpaired translation with PatchNCE on the generator's encoder.

Park, Efros, Zhang, Zhu. "Contrastive Learning for Unpaired Image-to-Image Translation", ECCV 2020.
Official code: taesungp/contrastive-unpaired-translation@b3ac297 (BSD). Paper defaults from
reference/methods.md §2.4: anti-aliased ResNet-9 G and PatchGAN D, lsgan, λ_GAN=1, λ_NCE=1 with
identity NCE (CUT) or λ_NCE=10 with flip-equivariance (FastCUT), nce_layers 0,4,8,12,16, 256 patches,
τ=0.07, MLP head of width 256 created at the first forward, xavier(0.02) init, update order D then G+F,
and no load->crop jitter in the decay phase.

`paper` preset (RECIPE; `bench methods --recipe cut`): the code defaults on every dataset, which is what the
official launcher `experiments/pretrained_launcher.py` trains the released models with (cityscapes:
`--direction BtoA --CUT_mode CUT|FastCUT`, = bench's default label2photo; horse2zebra and cat2dog:
`--CUT_mode CUT|FastCUT`); maps and facades have no CUT recipe and run the same defaults.

Difference from the official code (same values and gradients): the keys' (source) encoder features are
taken from the generator pass that made the fakes instead of a second pass over the source
(`nce_reuse_source_features`, off re-encodes like the official code).
On torch 2.14.1 (CPU) the official code's generator gradients are wrong in this configuration (plain
nn.InstanceNorm2d at batch size 1 receives PatchNCE's channels_last-strided gradient; README, measured by
benchmarks/instance_norm_gradients.py: relative error 1.25 (CUT) and 0.83 (FastCUT) at 128 px, ngf 32); bench's
instance norms make the gradient contiguous, so a side-by-side comparison on this torch must patch the official side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from methods.base import Method, adam, discriminator_step, set_requires_grad
from methods.config import CUTFamilyConfig
from methods.losses.gan import gan_loss
from methods.losses.patchnce import multilayer_patch_nce
from methods.nets.heads import PatchSampleF
from methods.nets.init import init_weights
from methods.nets.patchgan import define_D
from methods.nets.resnet import ResnetGenerator
from methods.recipes import CUTR, DatasetRecipe, Recipe, Setting, resize_and_crop, resize_test, src

_LAUNCHER = "experiments/pretrained_launcher.py"
_MODEL = "models/cut_model.py"


def _cut_recipe(mode: str, first: int, epochs: tuple[int, int], lambda_nce: float, idt: bool) -> Recipe:
    """CUT/FastCUT: the code defaults of `--CUT_mode mode`; the launcher's commands per dataset."""
    how = f"--CUT_mode {mode}"
    loader = resize_and_crop(CUTR, finetune=True, epochs=None)
    opt = "options/train_options.py" if mode == "CUT" else _MODEL
    return Recipe(
        code=CUTR,
        defaults={**loader,
                  "n_epochs": Setting(epochs[0], src(CUTR, opt, f"{how}: --n_epochs {epochs[0]}")),
                  "n_epochs_decay": Setting(epochs[1], src(CUTR, opt, f"{how}: --n_epochs_decay {epochs[1]}")),
                  "lambda_NCE": Setting(lambda_nce, src(CUTR, _MODEL, f"{how}: lambda_NCE={lambda_nce:g}")),
                  "nce_idt": Setting(idt, src(CUTR, _MODEL, f"{how}: nce_idt={idt}")),
                  "flip_equivariance": Setting(not idt, src(CUTR, _MODEL, f"{how}: flip_equivariance={not idt}")),
                  "lr": Setting(2e-4, src(CUTR, "options/train_options.py", "--lr"))},
        datasets={
            "cityscapes": DatasetRecipe(src(CUTR, _LAUNCHER, f"command {first}: --direction BtoA {how}")),
            "horse2zebra": DatasetRecipe(src(CUTR, _LAUNCHER, f"command {first + 2}: {how}")),
            "afhq": DatasetRecipe(src(CUTR, _LAUNCHER, f"command {first + 4}: cat2dog {how}")),
        },
        default_command=f"python train.py --dataroot ./datasets/<dataset> {how} (README; code defaults)",
        test=resize_test(CUTR),
    )


@dataclass(frozen=True)
class CUTConfig(CUTFamilyConfig):
    lambda_GAN: float = 1.0
    lambda_NCE: float = 1.0
    nce_idt: bool = True
    nce_layers: tuple[int, ...] = (0, 4, 8, 12, 16)
    nce_T: float = 0.07
    num_patches: int = 256
    netF: str = "mlp_sample"
    netF_nc: int = 256
    nce_includes_all_negatives_from_minibatch: bool = False
    flip_equivariance: bool = False
    #: Take the keys' (source) encoder features from the generator pass that made the fakes instead of a
    #: second encoder pass over the source, as the official code does. Same values and gradients (G is
    #: per-sample with instance/no norm and no dropout); it saves that pass and, where the keys carry
    #: gradient (QS-Attn's attention), its separate backward. Off, or under batch norm or a flipped
    #: iteration (where the pass saw other images), the source is encoded again like the official code.
    nce_reuse_source_features: bool = True

    CHOICES: ClassVar[dict] = {**CUTFamilyConfig.CHOICES, "netF": ("mlp_sample", "sample")}

    def validate(self) -> None:
        super().validate()
        self.check_generator_layers("nce_layers", self.nce_layers)
        self.check_at_least(1, "num_patches")


@dataclass(frozen=True)
class FastCUTConfig(CUTConfig):
    n_epochs: int = 150
    n_epochs_decay: int = 50
    lambda_NCE: float = 10.0
    nce_idt: bool = False
    flip_equivariance: bool = True


class CUT(Method):
    Config = CUTConfig
    citation = "Park et al., Contrastive Learning for Unpaired Image-to-Image Translation, ECCV 2020"
    official_code = "taesungp/contrastive-unpaired-translation@b3ac297"
    licence = "BSD"
    RECIPE = _cut_recipe("CUT", 0, (200, 200), 1.0, True)

    def __init__(self, cfg: CUTConfig, device="cpu") -> None:
        super().__init__(cfg, device)
        G = ResnetGenerator(3, 3, cfg.ngf, cfg.n_blocks, cfg.norm, False, antialias=cfg.antialias,
                            antialias_up=cfg.antialias_up)
        D = define_D(cfg.netD, 3, cfg.ndf, cfg.n_layers_D, cfg.norm, antialias=cfg.antialias)
        F = PatchSampleF(use_mlp=cfg.netF == "mlp_sample", nc=cfg.netF_nc, init_type=cfg.init_type,
                         init_gain=cfg.init_gain)
        self.nets = {"netG": init_weights(G, cfg.init_type, cfg.init_gain).to(self.device),
                     "netD": init_weights(D, cfg.init_type, cfg.init_gain).to(self.device),
                     "netF": F.to(self.device)}

    # ----------------------------------------------------------------- setup
    def setup(self, batch):
        """Create F's MLPs from the feature shapes of a first batch (CUT's data_dependent_initialize)."""
        with torch.no_grad():
            feats = self.nets["netG"](batch["A"][:1].to(self.device), self.cfg.nce_layers, encode_only=True)
            if self.cfg.netF == "mlp_sample" and not self.nets["netF"].mlp_init:
                self.nets["netF"].create_mlp([f.shape[1] for f in feats], device=self.device)
        self.optimizers = self.make_optimizers()

    def make_optimizers(self):
        opts = {"G": adam(self.nets["netG"].parameters(), self.cfg), "D": adam(self.nets["netD"].parameters(), self.cfg)}
        if self.cfg.netF == "mlp_sample":
            opts["F"] = adam(self.nets["netF"].parameters(), self.cfg)
        return opts

    # ----------------------------------------------------------------- losses
    def source_features_reusable(self, flipped: bool) -> bool:
        """Whether the fakes' generator pass gives the same source features a separate encoder pass would."""
        return self.cfg.nce_reuse_source_features and not flipped and self.cfg.norm != "batch"

    def nce_features(self, src: torch.Tensor, tgt: torch.Tensor, flipped: bool, feat_k=None):
        """G's encoder features of `tgt` (queries, un-flipped) and of `src` (keys; `feat_k` if already made)."""
        c, G = self.cfg, self.nets["netG"]
        feat_q = G(tgt, c.nce_layers, encode_only=True)
        if flipped:
            feat_q = [torch.flip(f, [3]) for f in feat_q]
        if feat_k is None:
            feat_k = G(src, c.nce_layers, encode_only=True)
        return feat_q, feat_k

    def nce_loss(self, src: torch.Tensor, tgt: torch.Tensor, flipped: bool, feat_k=None) -> torch.Tensor:
        """PatchNCE between G's encoder features of `tgt` (queries) and `src` (keys, detached)."""
        c, F = self.cfg, self.nets["netF"]
        feat_q, feat_k = self.nce_features(src, tgt, flipped, feat_k)
        k_pool, ids = F(feat_k, c.num_patches, None)
        q_pool, _ = F(feat_q, c.num_patches, ids)
        return multilayer_patch_nce(q_pool, k_pool, src.shape[0], c.lambda_NCE, c.nce_T,
                                    c.nce_includes_all_negatives_from_minibatch)

    def train_step(self, batch):
        c, n, opt = self.cfg, self.nets, self.optimizers
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        real = torch.cat((real_A, real_B)) if c.nce_idt else real_A
        flipped = bool(c.flip_equivariance and torch.rand(()).item() < 0.5)
        if flipped:
            real = torch.flip(real, [3])
        nA = real_A.size(0)
        if c.lambda_NCE > 0 and self.source_features_reusable(flipped):
            fake, feats = n["netG"](real, c.nce_layers)
            feat_A, feat_B = [f[:nA] for f in feats], [f[nA:] for f in feats]
        else:
            fake, feat_A, feat_B = n["netG"](real), None, None
        fake_B = fake[:nA]
        idt_B = fake[nA:] if c.nce_idt else None

        # D first (CUT family order)
        loss_D_real, loss_D_fake = discriminator_step(n["netD"], opt["D"], real_B, fake_B.detach(), c.gan_mode)

        # then G and F
        set_requires_grad(n["netD"], False)
        opt["G"].zero_grad(set_to_none=True)
        if "F" in opt:
            opt["F"].zero_grad(set_to_none=True)
        zero = torch.zeros((), device=self.device)
        loss_G_GAN = gan_loss(n["netD"](fake_B), True, c.gan_mode).mean() * c.lambda_GAN if c.lambda_GAN > 0 else zero
        loss_NCE = self.nce_loss(real_A, fake_B, flipped, feat_A) if c.lambda_NCE > 0 else zero
        if c.nce_idt and c.lambda_NCE > 0:
            loss_NCE_Y = self.nce_loss(real_B, idt_B, flipped, feat_B)
            loss_NCE_both = 0.5 * (loss_NCE + loss_NCE_Y)
        else:
            loss_NCE_Y = None
            loss_NCE_both = loss_NCE
        loss_G = loss_G_GAN + loss_NCE_both
        loss_G.backward()
        opt["G"].step()
        if "F" in opt:
            opt["F"].step()
        set_requires_grad(n["netD"], True)
        out = {"D_real": loss_D_real, "D_fake": loss_D_fake, "G_GAN": loss_G_GAN, "NCE": loss_NCE, "G": loss_G}
        if loss_NCE_Y is not None:
            out["NCE_Y"] = loss_NCE_Y
        return {k: v.detach() for k, v in out.items()}


class FastCUT(CUT):
    Config = FastCUTConfig
    RECIPE = _cut_recipe("FastCUT", 1, (150, 50), 10.0, False)
