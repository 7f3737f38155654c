"""DCLGAN and SimDCL: dual contrastive learning between two generators' encoders, and its similarity variant.

Han, Shoeiby, Petersson, Armin. "Dual Contrastive Learning for Unsupervised Image-to-Image
Translation", NTIRE (CVPRW) 2021. Official code: JunlinHan/DCLGAN@abb805c (MIT); reference/methods.md §2.5.
Nets: G_A (X→Y), G_B (Y→X), D_A (judges Y), D_B (judges X), MLP heads F1 = H_X and F2 = H_Y on the
anti-aliased ResNet-9 encoders at nce_layers 4,8,12,16. NCE1 samples G_A's features of real A with F1 and
queries G_B's features of fake B with F2 at the same positions; NCE2 mirrors it (G_B/F2 on real B, G_A/F1 on
fake A). G loss = 0.5·(GAN_A + GAN_B) + 0.5·(NCE1 + NCE2) + 0.5·(idt_A + idt_B) with hinge GAN (the
generator uses the "real" hinge term), λ_GAN=1, λ_NCE=2, λ_IDT=1 (identity L1, computed because nce_idt).
PatchNCE is DCLGAN's own (models/patchnce.py): cosine similarity, so exact unit vectors rather than the heads'
x/(|x|+1e-7), and negatives from every sampled patch of the minibatch (CUT's loss: nce_similarity=dot).
Update order: D_A and D_B, then G_A+G_B and the heads. SimDCL adds four MappingF nets F3–F6 (H_xr, H_yf,
H_yr, H_xf) and λ_SIM·L_sim between the real and the fake image of each domain (methods/nets/mapping.py,
methods/losses/similarity.py); the fake images' features are sampled at fresh random positions.

The `paper` preset (RECIPE; `bench methods --recipe dclgan`) is the official code's defaults on every dataset:
the README trains every dataset with `python train.py --dataroot ./datasets/<name> --name <name>_DCL` (SimDCL:
`--model simdcl`), no per-dataset flags. Where the paper's text says otherwise, a named option runs the
paper's version (preset `paper_text` sets them all):
- lr: 2e-4 in the code (train_options) vs 1e-4 for DCLGAN in the paper (SimDCL: 2e-4 in both);
- pool_size: 0 in the code (forced by the model) vs an image buffer of 50 in the paper (appendix A.1.2);
- F_optimizer: DCLGAN's head optimiser is `torch.optim.Adam` with PyTorch defaults in the code
  ('adam_default': lr 1e-3, β 0.9/0.999) vs the G/D settings ('as_G', what SimDCL's code and the paper use);
- apply_lambda_NCE (SimDCL): the code never multiplies NCE by λ_NCE (effective 1) vs λ_NCE=2 in the paper;
- sim_reduction (SimDCL): the code's `L1Loss('sum')` is really a mean (legacy `size_average` argument) vs the
  paper's sum;
- epochs: SimDCL is 200+200 in the code vs 100+100 (200 in total) in the paper; the paper also trained DCLGAN
  on Cat↔Dog for 200 epochs only (`--set n_epochs=100 n_epochs_decay=100`).
Not switchable: the code halves every generator term (0.5·) where the paper's objective sums them; λ_GAN only
scales the logged D losses; identity L1 is dropped when λ_NCE is 0. SimDCL's code needs batch size 1; here
each image gets its own feature stack, which equals the code at batch size 1.
Checked against the official classes (float64, same weights and seed, 64 px, one step): every logged loss
agrees to 1e-10 for both methods; parameters agree to 1e-11 except conv biases in front of instance norm,
whose gradient is zero up to rounding and which Adam's first step amplifies (<2e-9).
On torch 2.14.1 (CPU) the official code's generator gradients are wrong in this configuration (plain
nn.InstanceNorm2d at batch size 1 receives PatchNCE's channels_last-strided gradient; README, measured by
benchmarks/instance_norm_gradients.py: relative error 1.03 (DCLGAN) and 1.04 (SimDCL) at 128 px, ngf 32); bench's
instance norms make the gradient contiguous, so a side-by-side comparison on this torch must patch the official side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from methods.base import Method, adam, backward, discriminator_backward, optimizer_step, parameters_of, set_requires_grad
from methods.config import CUTFamilyConfig
from methods.losses.gan import gan_loss
from methods.losses.patchnce import multilayer_patch_nce
from methods.losses.similarity import REDUCTIONS, similarity_loss
from methods.nets.heads import PatchSampleF
from methods.nets.image_pool import ImagePool
from methods.nets.init import init_weights
from methods.nets.mapping import MappingF, stack_samples
from methods.nets.patchgan import define_D
from methods.nets.resnet import ResnetGenerator
from methods.recipes import DCLR, DatasetRecipe, Recipe, Setting, resize_and_crop, resize_test, src


def _dcl_recipe(model: str, extra: dict) -> Recipe:
    m = "models/dcl_model.py" if model == "dcl" else "models/simdcl_model.py"
    flag = "" if model == "dcl" else " --model simdcl"
    return Recipe(
        code=DCLR,
        defaults={**resize_and_crop(DCLR, finetune=True, epochs=(200, 200)),
                  "lr": Setting(2e-4, src(DCLR, "options/train_options.py", "--lr")),
                  "gan_mode": Setting("hinge", src(DCLR, "options/train_options.py", "--gan_mode")),
                  "lambda_NCE": Setting(2.0, src(DCLR, "models/dcl_model.py", "--lambda_NCE")),
                  "lambda_IDT": Setting(1.0, src(DCLR, "models/dcl_model.py", "--lambda_IDT")),
                  "pool_size": Setting(0, src(DCLR, m, "set_defaults(pool_size=0)")), **extra},
        datasets={"afhq": DatasetRecipe(
            f"python train.py --dataroot ./datasets/cat2dog{flag} (README; code defaults)",
            note="the paper trained DCLGAN on Cat<->Dog for 200 epochs (text, not code): "
                 "--set n_epochs=100 n_epochs_decay=100")} if model == "dcl" else {},
        default_command=f"python train.py --dataroot ./datasets/<dataset>{flag} (README; code defaults)",
        test=resize_test(DCLR),
    )


@dataclass(frozen=True)
class DCLGANConfig(CUTFamilyConfig):
    gan_mode: str = "hinge"
    lambda_GAN: float = 1.0
    lambda_NCE: float = 2.0
    lambda_IDT: float = 1.0
    #: The official name: here it switches the identity *L1* term (DCLGAN has no identity NCE).
    nce_idt: bool = True
    nce_layers: tuple[int, ...] = (4, 8, 12, 16)
    nce_T: float = 0.07
    num_patches: int = 256
    netF: str = "mlp_sample"
    netF_nc: int = 256
    #: 'cosine': DCLGAN's PatchNCELoss (cosine similarity, negatives from every sampled patch of the
    #: minibatch); 'dot': CUT's loss (its PatchNCELoss2), where the next option applies.
    nce_similarity: str = "cosine"
    nce_includes_all_negatives_from_minibatch: bool = False
    #: 0 in the code, 50 in the paper's appendix.
    pool_size: int = 0
    #: 'adam_default' (code: lr 1e-3, betas 0.9/0.999) or 'as_G' (lr and betas of G and D).
    F_optimizer: str = "adam_default"

    CHOICES: ClassVar[dict] = {**CUTFamilyConfig.CHOICES, "netF": ("mlp_sample", "sample"),
                               "F_optimizer": ("adam_default", "as_G"), "nce_similarity": ("cosine", "dot")}

    def validate(self) -> None:
        super().validate()
        self.check_generator_layers("nce_layers", self.nce_layers)
        self.check_at_least(1, "num_patches")
        self.check_at_least(0, "pool_size")


@dataclass(frozen=True)
class SimDCLConfig(DCLGANConfig):
    lambda_SIM: float = 10.0
    #: The code's head optimiser covers F1–F6 with lr and betas of G.
    F_optimizer: str = "as_G"
    #: False: the code's NCE weight 1; True: the paper's λ_NCE (2).
    apply_lambda_NCE: bool = False
    #: 'mean' (what the code computes) or 'sum' (what the paper writes).
    sim_reduction: str = "mean"
    #: Output width of the mapping nets (64, hard-coded in the code).
    map_dim: int = 64

    CHOICES: ClassVar[dict] = {**DCLGANConfig.CHOICES, "sim_reduction": REDUCTIONS}

    def validate(self) -> None:
        super().validate()
        if self.netF != "mlp_sample":
            raise ConfigError("SimDCL needs netF=mlp_sample: its mapping nets read the MLP heads' outputs")


class DCLGAN(Method):
    Config = DCLGANConfig
    two_way = True
    POOLS = ("fake_A_pool", "fake_B_pool")
    citation = "Han et al., Dual Contrastive Learning for Unsupervised Image-to-Image Translation, CVPRW 2021"
    official_code = "JunlinHan/DCLGAN@abb805c"
    licence = "MIT"
    PRESETS = {"paper_text": {"lr": 1e-4, "pool_size": 50, "F_optimizer": "as_G"}}
    RECIPE = _dcl_recipe("dcl", {})

    def __init__(self, cfg: DCLGANConfig, device="cpu") -> None:
        super().__init__(cfg, device)

        def G():
            return ResnetGenerator(3, 3, cfg.ngf, cfg.n_blocks, cfg.norm, False, antialias=cfg.antialias,
                                   antialias_up=cfg.antialias_up)

        def D():
            return define_D(cfg.netD, 3, cfg.ndf, cfg.n_layers_D, cfg.norm, antialias=cfg.antialias)

        def F_head():
            return PatchSampleF(use_mlp=cfg.netF == "mlp_sample", nc=cfg.netF_nc, init_type=cfg.init_type,
                                init_gain=cfg.init_gain)

        self.nets = {"netG_A": G(), "netG_B": G(), "netD_A": D(), "netD_B": D(), "netF1": F_head(), "netF2": F_head()}
        for k, net in self.nets.items():
            if not k.startswith("netF"):  # the heads initialise their lazily created MLPs themselves
                init_weights(net, cfg.init_type, cfg.init_gain)
            net.to(self.device)
        self.fake_A_pool = ImagePool(cfg.pool_size)
        self.fake_B_pool = ImagePool(cfg.pool_size)

    # ----------------------------------------------------------------- setup
    def setup(self, batch):
        """Create F1/F2's MLPs from the encoder's feature widths (DCLGAN's data_dependent_initialize)."""
        with torch.no_grad():
            feats = self.nets["netG_A"](batch["A"][:1].to(self.device), self.cfg.nce_layers, encode_only=True)
        self.check_feature_sizes(feats)
        if self.cfg.netF == "mlp_sample":
            for k in ("netF1", "netF2"):
                if not self.nets[k].mlp_init:
                    self.nets[k].create_mlp([f.shape[1] for f in feats], device=self.device)
        self.optimizers = self.make_optimizers()

    def check_feature_sizes(self, feats) -> None:
        """Hook for variants that need a minimum number of positions per layer."""

    def head_keys(self) -> list[str]:
        """Nets updated by the head optimiser (optimizer_F)."""
        return ["netF1", "netF2"] if self.cfg.netF == "mlp_sample" else []

    def make_optimizers(self):
        n, c = self.nets, self.cfg
        opts = {"G": adam(parameters_of(n["netG_A"], n["netG_B"]), c),
                "D": adam(parameters_of(n["netD_A"], n["netD_B"]), c)}
        heads = [p for k in self.head_keys() for p in n[k].parameters()]
        if heads:
            # Follows JunlinHan/DCLGAN@abb805c:models/dcl_model.py: Adam(F1+F2) with PyTorch's defaults.
            opts["F"] = torch.optim.Adam(heads) if c.F_optimizer == "adam_default" else adam(heads, c)
        return opts

    # ----------------------------------------------------------------- losses
    def encode(self, G: str, x: torch.Tensor) -> list[torch.Tensor]:
        return self.nets[G](x, self.cfg.nce_layers, encode_only=True)

    def dual_nce(self, src, tgt, G_src: str, F_src: str, G_tgt: str, F_tgt: str) -> torch.Tensor:
        """PatchNCE where the source generator's encoder and head give the keys (and the positions) and the
        other generator's encoder and head give the queries of the translated image (NCE1 / NCE2)."""
        c = self.cfg
        feat_q = self.encode(G_tgt, tgt)
        feat_k = self.encode(G_src, src)
        k_pool, ids = self.nets[F_src](feat_k, c.num_patches, None)
        q_pool, _ = self.nets[F_tgt](feat_q, c.num_patches, ids)
        return self.patch_nce(q_pool, k_pool, src.shape[0], 1.0)

    def patch_nce(self, q_pool, k_pool, batch_size: int, weight: float) -> torch.Tensor:
        """Mean over layers of weight * PatchNCE, with DCLGAN's cosine loss or CUT's dot-product loss."""
        c = self.cfg
        if c.nce_similarity == "dot":
            return multilayer_patch_nce(q_pool, k_pool, batch_size, weight, c.nce_T,
                                        c.nce_includes_all_negatives_from_minibatch)
        # Follows JunlinHan/DCLGAN@abb805c:models/patchnce.py PatchNCELoss: cosine similarity (exactly
        # unit vectors, unlike the heads' x / (|x| + 1e-7)) and all B*S sampled patches as one set.
        q_pool = [F.normalize(q, dim=1, eps=1e-8) for q in q_pool]
        k_pool = [F.normalize(k, dim=1, eps=1e-8) for k in k_pool]
        return multilayer_patch_nce(q_pool, k_pool, batch_size, weight, c.nce_T, all_negatives_from_minibatch=True)

    def contrastive_terms(self, real_A, fake_B, real_B, fake_A) -> dict[str, torch.Tensor]:
        """NCE1 (A side) and NCE2 (B side), weighted by λ_NCE like the code's logged losses."""
        c = self.cfg
        if c.lambda_NCE <= 0:
            zero = torch.zeros((), device=self.device)
            return {"NCE1": zero, "NCE2": zero}
        return {"NCE1": self.dual_nce(real_A, fake_B, "netG_A", "netF1", "netG_B", "netF2") * c.lambda_NCE,
                "NCE2": self.dual_nce(real_B, fake_A, "netG_B", "netF2", "netG_A", "netF1") * c.lambda_NCE}

    def train_step(self, batch):
        c, n, opt = self.cfg, self.nets, self.optimizers
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        b = real_A.size(0)
        # One pass per generator for the translation and the identity image (instance norm is per sample).
        if c.nce_idt:
            fake_B, idt_A = n["netG_A"](torch.cat((real_A, real_B))).split(b)
            fake_A, idt_B = n["netG_B"](torch.cat((real_B, real_A))).split(b)
        else:
            fake_B, fake_A = n["netG_A"](real_A), n["netG_B"](real_B)

        # D_A and D_B first (the CUT-family order)
        set_requires_grad([n["netD_A"], n["netD_B"]], True)
        opt["D"].zero_grad(set_to_none=True)
        loss_D_A = discriminator_backward(n["netD_A"], real_B, self.fake_B_pool.query(fake_B), c.gan_mode)
        loss_D_B = discriminator_backward(n["netD_B"], real_A, self.fake_A_pool.query(fake_A), c.gan_mode)
        optimizer_step(opt["D"])

        # then G_A, G_B and the heads
        set_requires_grad([n["netD_A"], n["netD_B"]], False)
        opt["G"].zero_grad(set_to_none=True)
        if "F" in opt:
            opt["F"].zero_grad(set_to_none=True)
        zero = torch.zeros((), device=self.device)
        losses = {"D_A": loss_D_A * self.d_loss_scale(), "D_B": loss_D_B * self.d_loss_scale()}
        if c.lambda_GAN > 0:
            losses["G_A"] = gan_loss(n["netD_A"](fake_B), True, c.gan_mode).mean() * c.lambda_GAN
            losses["G_B"] = gan_loss(n["netD_B"](fake_A), True, c.gan_mode).mean() * c.lambda_GAN
        else:
            losses["G_A"] = losses["G_B"] = zero
        losses.update(self.contrastive_terms(real_A, fake_B, real_B, fake_A))
        loss_G = 0.5 * (losses["G_A"] + losses["G_B"]) + 0.5 * (losses["NCE1"] + losses["NCE2"])
        if c.nce_idt and self.identity_enabled():
            losses["idt_A"] = F.l1_loss(idt_A, real_B) * c.lambda_IDT
            losses["idt_B"] = F.l1_loss(idt_B, real_A) * c.lambda_IDT
            loss_G = loss_G + 0.5 * (losses["idt_A"] + losses["idt_B"])
        loss_G = loss_G + losses.get("Sim", zero)
        losses["G"] = loss_G
        backward(loss_G)
        optimizer_step(opt["G"])
        if "F" in opt:
            optimizer_step(opt["F"])
        set_requires_grad([n["netD_A"], n["netD_B"]], True)
        return {k: v.detach() for k, v in losses.items()}

    def d_loss_scale(self) -> float:
        """DCLGAN logs the D losses times λ_GAN (after backward, so gradients are unscaled)."""
        return self.cfg.lambda_GAN

    def identity_enabled(self) -> bool:
        """DCLGAN's code adds the identity L1 only inside its `lambda_NCE > 0` branch."""
        return self.cfg.lambda_NCE > 0

    # ----------------------------------------------------------------- inference and state
    @torch.no_grad()
    def translate(self, x, z=None, direction="AtoB"):
        self.check_direction(direction)
        return self.nets["netG_A" if direction == "AtoB" else "netG_B"](x.to(self.device))



class SimDCL(DCLGAN):
    Config = SimDCLConfig
    citation = DCLGAN.citation + " (SimDCL variant)"
    PRESETS = {"paper_text": {"pool_size": 50, "apply_lambda_NCE": True, "sim_reduction": "sum",
                              "n_epochs": 100, "n_epochs_decay": 100}}
    RECIPE = _dcl_recipe("simdcl", {"lambda_SIM": Setting(10.0, src(DCLR, "models/simdcl_model.py", "--lambda_SIM"))})

    #: The four mapping nets and what they read (official names F3..F6).
    MAPPINGS = {"netF3": "real A (H_xr)", "netF4": "fake B (H_yf)", "netF5": "real B (H_yr)", "netF6": "fake A (H_xf)"}

    def __init__(self, cfg: SimDCLConfig, device="cpu") -> None:
        super().__init__(cfg, device)
        for k in self.MAPPINGS:
            self.nets[k] = init_weights(MappingF(len(cfg.nce_layers), cfg.map_dim), cfg.init_type,
                                        cfg.init_gain).to(self.device)

    def check_feature_sizes(self, feats) -> None:
        small = [(layer, f.shape[2] * f.shape[3]) for layer, f in zip(self.cfg.nce_layers, feats)
                 if f.shape[2] * f.shape[3] < self.cfg.num_patches]
        if small:
            raise ConfigError(f"SimDCL stacks {self.cfg.num_patches} samples per layer, but layers (index, positions) "
                              f"{small} have fewer at crop_size {self.cfg.crop_size}; lower num_patches or raise crop_size")

    def head_keys(self):
        return ["netF1", "netF2", *self.MAPPINGS]

    def d_loss_scale(self) -> float:
        return 1.0

    def identity_enabled(self) -> bool:
        return True

    def contrastive_terms(self, real_A, fake_B, real_B, fake_A):
        """NCE1, NCE2 and λ_SIM·L_sim from one set of encoder passes, in the code's sampling order."""
        c, n = self.cfg, self.nets
        b = real_A.size(0)
        feat_q1, feat_k1 = self.encode("netG_B", fake_B), self.encode("netG_A", real_A)
        feat_q2, feat_k2 = self.encode("netG_A", fake_A), self.encode("netG_B", real_B)
        k_pool1, ids1 = n["netF1"](feat_k1, c.num_patches, None)
        q_pool1, _ = n["netF2"](feat_q1, c.num_patches, ids1)
        q_pool1_free, _ = n["netF2"](feat_q1, c.num_patches, None)  # fresh positions for the similarity term
        k_pool2, ids2 = n["netF2"](feat_k2, c.num_patches, None)
        q_pool2, _ = n["netF1"](feat_q2, c.num_patches, ids2)
        q_pool2_free, _ = n["netF1"](feat_q2, c.num_patches, None)
        weight = c.lambda_NCE if c.apply_lambda_NCE else 1.0
        out = {"NCE1": self.patch_nce(q_pool1, k_pool1, b, weight), "NCE2": self.patch_nce(q_pool2, k_pool2, b, weight)}
        real_x = n["netF3"](stack_samples(k_pool1, b))
        fake_y = n["netF4"](stack_samples(q_pool1_free, b))
        real_y = n["netF5"](stack_samples(k_pool2, b))
        fake_x = n["netF6"](stack_samples(q_pool2_free, b))
        out["Sim"] = similarity_loss([(real_x, fake_x), (fake_y, real_y)], c.sim_reduction) * c.lambda_SIM
        return out
