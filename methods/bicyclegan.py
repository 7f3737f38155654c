"""BicycleGAN and the five variants its paper compares: pix2pix+noise, cAE-GAN, cVAE-GAN, cVAE-GAN++, cLR-GAN.

Zhu, Zhang, Pathak, Darrell, Efros, Wang, Shechtman. "Toward Multimodal Image-to-Image Translation",
NeurIPS 2017. Official code: junyanz/BicycleGAN@40b9d52 (BSD), models/bicycle_gan_model.py.
Defaults from reference/methods.md §2.3: U-Net 256 with z (nz=8) concatenated at every down level
(add_to_all), InstanceNorm, dropout (every training script passes --use_dropout), E_ResNet encoder,
two 2-scale PatchGANs D (encoded branch) and D2 (random branch) seeing B only (no conditioning on A),
lsgan, λ_L1=10, λ_GAN=λ_GAN2=1, λ_z=0.5, λ_kl=0.01 (KL summed over batch×nz), xavier(0.02) init,
Adam 2e-4 (0.5, 0.999) for G, E, D, D2 each, 100+100 epochs, batch 2 = 1 "encoded" + 1 "random" pair.
Parameters: G 54,794,627 + E 2,590,032 + D 3,458,978 + D2 3,458,978 = 64,302,615.

One step (update G and E, then D and D2; the D losses are sums, no 0.5):
- encoded branch (first half, A₁ B₁): z = μ + σ·ε from E(B₁); fake_enc = G(A₁, z);
  λ_GAN·GAN(D(fake_enc)) + λ_L1·‖fake_enc − B₁‖₁ + λ_kl·KL.  D: real B₁ vs fake_enc.
- random branch (second half): z ~ N(0, I); fake_rand = G(A₁, z); λ_GAN2·GAN(D2(fake_rand)) and the latent
  regression λ_z·‖μ(E(fake_rand)) − z‖₁, which updates G only (E is frozen for this term, paper §4).
  D2: real B₂ vs fake_rand.
The variants switch terms off (paper §3, Fig. 2); nets exist only for terms in use:

| name          | E                | z in the first branch | terms                          | batch |
|---------------|------------------|-----------------------|--------------------------------|-------|
| pix2pix_noise | none             | N(0, I)               | GAN(D), L1                     | 1     |
| cae_gan       | deterministic    | E(B)                  | GAN(D), L1                     | 1     |
| cvae_gan      | VAE              | μ + σ·ε               | GAN(D), L1, KL                 | 1     |
| cvae_gan_pp   | VAE              | μ + σ·ε               | GAN(D), L1, KL, GAN2(D2)       | 2     |
| clr_gan       | point estimate   | (random branch only)  | GAN2(D2), latent (updates E)   | 1     |
| bicyclegan    | VAE              | μ + σ·ε               | all five                       | 2     |

Where we differ from the official code, and why:
- cLR-GAN crashes officially (λ_GAN=0 leaves `netD` undefined, then `set_requires_grad([netD, netD2])`);
  here it runs. Officially its encoder would also never learn (the latent term updates G only and no
  other term reaches E); the paper's Eq. 8 minimises the latent term over G and E, so `clr_gan` sets
  `latent_updates_E=True` and a point-estimate E (no log σ² head). BicycleGAN keeps E frozen there.
- cAE-GAN and pix2pix+noise cannot be expressed officially (E is always VAE-like; its pix2pix forces
  nz=0). cAE-GAN: E has only the μ head and z = E(B). pix2pix+noise: the same G, z ~ N(0, I) paired with
  B for L1 and GAN, no E.
- cVAE-GAN is expressible with the official flags (λ_GAN2 = λ_z = 0), so it runs as they do: batch 2, the
  first half is the encoded branch and the second half is loaded but unused (`split_batch=True`): N/2 updates
  per epoch of N images. `--set batch_size=1 split_batch=false` uses every image (N updates per epoch, the
  previous bench behaviour). cAE-GAN, cLR-GAN and pix2pix+noise cannot be run officially; they take batch 1
  (the paper's batch size; one image per branch as in the official 2 = 1 + 1 split).
- The random branch pairs D2's real B₂ with fakes made from A₁ (official `forward`); A₂ is then unused
  (except as the real pair's condition with conditional_D). We keep this default: with the unconditional D
  of the paper it is sound (B₂ is a sample of p(B); a random-z fake is not meant to match any B), only
  wasteful. `random_branch_own_A=True` makes the fakes from A₂ instead.
- The official pix2pix in this repository has λ_L1 = 10 by a typo; our pix2pix is the CycleGAN repo's.
- Not implemented: upsample='bilinear', nl other than relu, use_same_D, uniform z, the official single-scale
  netD 'basic_256' (it crashes in the official define_D; use num_Ds=1).

Test time (official test.py calls model.eval()): `translate` runs G in eval mode (no dropout) with z from
N(0, I) unless given; `encode(B)` returns μ; `reconstruct(A, B) = G(A, μ(E(B)))` (paper Table 1).

`paper` preset (RECIPE; `bench methods --recipe bicyclegan`), from the official scripts (they train
bicycle_gan; the variants use the same data recipe with their own loss switches):
- facades: `scripts/train_facades.sh`: 200+200 epochs, load 256 = crop 256 (no resize jitter), BtoA, --use_dropout;
  test `scripts/test_facades.sh`: load 286, crop 256 (its `--center_crop` is parsed but never used, so the
  official test crops at random; bench crops the centre: deterministic).
- maps: `scripts/train.sh maps`: 200+200 epochs, load 600 -> crop 256, BtoA; test `scripts/test_maps.sh`:
  load = crop = 512 (translated at 512 px, `--no_encode`: E reads 256 px, so `recon_l1` is unavailable there).
- other datasets: the code defaults (100+100, load 286 -> crop 256).
Depth options: `num_downs` (U-Net, 8 = unet_256) and `num_downs_E` (E, 5 = resnet_256/conv_256; E needs
images of exactly 8·2**num_downs_E px). The smoke preset fits 32 px with num_downs 5, num_downs_E 2 and
netD/netD2 basic_128_multi (the 256 D's coarse scale has no output at 16 px), and the width nef 8 beside the
generic ngf = ndf = 8; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.errors import ConfigError, UsageError
from methods.base import Method, adam, set_requires_grad
from methods.config import MethodConfig
from methods.losses.gan import multiscale_gan_loss
from methods.losses.kl import kl_to_standard_normal, reparameterize
from methods.nets.encoders import ENCODERS, define_E, encoder_input_size
from methods.nets.init import init_weights
from methods.nets.multiscale import KINDS, define_D_multi, smallest_patch_map
from methods.nets.unet import define_G_z
from methods.pix2pix import check_unet_depth, eval_mode
from methods.recipes import BGR, DatasetRecipe, Recipe, Setting, resize_and_crop, src

CITATION = "Zhu et al., Toward Multimodal Image-to-Image Translation, NeurIPS 2017"
OFFICIAL = "junyanz/BicycleGAN@40b9d52"


@dataclass(frozen=True)
class Pix2PixNoiseConfig(MethodConfig):
    """pix2pix+noise: BicycleGAN's G and Ds, z ~ N(0, I), no encoder."""

    batch_size: int = 1
    init_type: str = "xavier"
    nz: int = 8
    #: U-Net depth: 8 = unet_256, 7 = unet_128; crop_size must be a multiple of 2**num_downs.
    num_downs: int = 8
    where_add: str = "all"
    norm: str = "instance"
    use_dropout: bool = True
    netD: str = "basic_256_multi"
    netD2: str = "basic_256_multi"
    num_Ds: int = 2
    #: D sees concat(A, B) (6 channels) instead of B; the paper found unconditional D better.
    conditional_D: bool = False
    gan_mode: str = "lsgan"
    lambda_L1: float = 10.0
    lambda_GAN: float = 1.0
    lambda_GAN2: float = 0.0
    #: Random-branch fakes from that half's own inputs A₂ (False = official: from A₁).
    random_branch_own_A: bool = False
    #: Halve every batch into the encoded and random halves even when only one branch trains, the unused
    #: half being discarded (the official forward; cVAE-GAN with the official flags).
    split_batch: bool = False

    CHOICES: ClassVar[dict] = {**MethodConfig.CHOICES, "where_add": ("input", "all"),
                               "norm": ("instance", "batch", "none"), "netD": tuple(KINDS), "netD2": tuple(KINDS),
                               "gan_mode": ("lsgan", "vanilla", "wgangp")}

    def loss_weights(self) -> dict[str, float]:
        """Every λ of this configuration by name."""
        return {"lambda_L1": self.lambda_L1, "lambda_GAN": self.lambda_GAN, "lambda_GAN2": self.lambda_GAN2}

    @property
    def encoded_branch(self) -> bool:
        """Whether the first ("encoded") branch has a loss term."""
        return self.lambda_GAN > 0 or self.lambda_L1 > 0

    @property
    def random_branch(self) -> bool:
        """Whether the second ("random z") branch has a loss term."""
        return self.lambda_GAN2 > 0

    def validate(self) -> None:
        super().validate()
        lambdas = self.loss_weights()
        for name, value in lambdas.items():
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if self.nz < 1:
            raise ConfigError(f"nz must be >= 1, got {self.nz}")
        if self.num_Ds < 1:
            raise ConfigError(f"num_Ds must be >= 1, got {self.num_Ds}")
        check_unet_depth(self.num_downs, self.crop_size)
        for key, kind, used in (("netD", self.netD, self.lambda_GAN > 0), ("netD2", self.netD2, self.lambda_GAN2 > 0)):
            if used and smallest_patch_map(kind, self.crop_size, self.num_Ds) < 1:
                raise ConfigError(f"{key}={kind} with num_Ds={self.num_Ds} has no output at crop_size="
                                  f"{self.crop_size}; use --set {key}=basic_128_multi or fewer num_Ds")
        if not (self.encoded_branch or self.random_branch):
            raise ConfigError(f"every loss weight is 0 ({', '.join(lambdas)}); nothing would be trained")
        if (self.encoded_branch and self.random_branch or self.split_batch) and self.batch_size % 2:
            raise ConfigError(f"batch_size={self.batch_size} must be even: the batch is split into an encoded and "
                              "a random half (BicycleGAN uses 2)")


@dataclass(frozen=True)
class BicycleGANConfig(Pix2PixNoiseConfig):
    batch_size: int = 2
    netE: str = "E_ResNet"
    nef: int = 64
    #: Stride-2 stages of E before its AvgPool(8): 5 for 256 px (resnet_256 / conv_256), 4 for 128 px.
    num_downs_E: int = 5
    #: E predicts (μ, log σ²) and z is sampled; False = deterministic E with only the μ head (cAE-GAN, cLR-GAN).
    vae: bool = True
    lambda_GAN2: float = 1.0
    lambda_z: float = 0.5
    lambda_kl: float = 0.01
    #: Let the latent regression ‖μ(E(G(A, z))) − z‖₁ update E too (paper Eq. 8 for cLR-GAN); BicycleGAN freezes E.
    latent_updates_E: bool = False

    CHOICES: ClassVar[dict] = {**Pix2PixNoiseConfig.CHOICES, "netE": tuple(ENCODERS)}

    def loss_weights(self) -> dict[str, float]:
        return {**super().loss_weights(), "lambda_z": self.lambda_z, "lambda_kl": self.lambda_kl}

    @property
    def encoded_branch(self) -> bool:
        return self.lambda_GAN > 0 or self.lambda_L1 > 0 or self.lambda_kl > 0

    @property
    def random_branch(self) -> bool:
        return self.lambda_GAN2 > 0 or self.lambda_z > 0

    def validate(self) -> None:
        super().validate()
        if self.lambda_kl > 0 and not self.vae:
            raise ConfigError(f"lambda_kl={self.lambda_kl} needs a VAE encoder; set vae=true or lambda_kl=0")
        if self.num_downs_E < 1:
            raise ConfigError(f"num_downs_E must be >= 1, got {self.num_downs_E}")
        side = encoder_input_size(self.num_downs_E)
        if self.crop_size != side:
            fits = [n for n in range(1, 10) if encoder_input_size(n) == self.crop_size]
            hint = f"--set num_downs_E={fits[0]}" if fits else "a crop_size of 8·2**k px (64, 128, 256, ...)"
            raise ConfigError(f"num_downs_E={self.num_downs_E} makes E read {side}x{side} images but crop_size="
                              f"{self.crop_size}; use {hint} (resnet_256 = 5, resnet_128 = 4)")


@dataclass(frozen=True)
class CAEGANConfig(BicycleGANConfig):
    batch_size: int = 1
    vae: bool = False
    lambda_GAN2: float = 0.0
    lambda_z: float = 0.0
    lambda_kl: float = 0.0


@dataclass(frozen=True)
class CVAEGANConfig(BicycleGANConfig):
    """The official flags --lambda_GAN2 0 --lambda_z 0: batch 2, the second half unused (split_batch)."""

    batch_size: int = 2
    split_batch: bool = True
    lambda_GAN2: float = 0.0
    lambda_z: float = 0.0


@dataclass(frozen=True)
class CVAEGANPlusPlusConfig(BicycleGANConfig):
    lambda_z: float = 0.0


@dataclass(frozen=True)
class CLRGANConfig(BicycleGANConfig):
    batch_size: int = 1
    vae: bool = False
    lambda_L1: float = 0.0
    lambda_GAN: float = 0.0
    lambda_kl: float = 0.0
    latent_updates_E: bool = True


_OPT = "options/train_options.py"


def _recipe(batch: Setting) -> Recipe:
    """The family's recipe: the official scripts' per-dataset settings, with this variant's batch size."""
    defaults = {**resize_and_crop(BGR, sampling=False),
                "n_epochs": Setting(100, src(BGR, _OPT, "--niter")),
                "n_epochs_decay": Setting(100, src(BGR, _OPT, "--niter_decay")),
                "lr": Setting(2e-4, src(BGR, _OPT, "--lr")),
                "use_dropout": Setting(True, src(BGR, "scripts/train.sh", "--use_dropout (every script)")),
                "batch_size": batch}
    epochs = {"n_epochs": Setting(200, src(BGR, "scripts/train.sh", "maps: NITER=200")),
              "n_epochs_decay": Setting(200, src(BGR, "scripts/train.sh", "maps: NITER_DECAY=200"))}
    return Recipe(
        code=BGR,
        defaults=defaults,
        datasets={
            "facades": DatasetRecipe(
                src(BGR, "scripts/train_facades.sh", "--direction BtoA --load_size 256 --crop_size 256 --niter 200 "
                    "--niter_decay 200 --use_dropout"),
                {"n_epochs": Setting(200, src(BGR, "scripts/train_facades.sh", "NITER=200")),
                 "n_epochs_decay": Setting(200, src(BGR, "scripts/train_facades.sh", "NITER_DECAY=200")),
                 "load_size": Setting(256, src(BGR, "scripts/train_facades.sh", "LOAD_SIZE=256")),
                 "test_load_size": Setting(286, src(BGR, "scripts/test_facades.sh", "LOAD_SIZE=286")),
                 "test_crop_size": Setting(256, src(BGR, "scripts/test_facades.sh", "CROP_SIZE=256 --center_crop"))},
                note="scripts/train.sh facades keeps load 286; the dedicated train_facades.sh (used here) loads 256. "
                     "The test's --center_crop is parsed but unused officially (random crop); bench crops the centre"),
            "maps": DatasetRecipe(
                src(BGR, "scripts/train.sh", "maps: --direction BtoA --load_size 600 --crop_size 256 --niter 200 "
                    "--niter_decay 200 --use_dropout"),
                {**epochs, "load_size": Setting(600, src(BGR, "scripts/train.sh", "maps: LOAD_SIZE=600")),
                 "test_load_size": Setting(512, src(BGR, "scripts/test_maps.sh", "LOAD_SIZE=512 CROP_SIZE=512"))},
                note="test_maps.sh passes --no_encode: E reads 256 px, so recon_l1 is unavailable at the 512 px test"),
        },
        default_command="python train.py --dataroot ./datasets/<dataset> --model bicycle_gan --use_dropout "
                        "(code defaults; no script for this dataset)",
        test=Setting("resize to test_load_size (default crop_size) bicubic, centre crop test_crop_size; eval mode",
                     src(BGR, "test.py", "model.eval(); load_size/crop_size from scripts/test_*.sh")),
    )


_BATCH2 = Setting(2, src(BGR, "options/base_options.py", "--batch_size 2 (1 encoded + 1 random)"))
_BATCH1 = Setting(1, "bench: not expressible with the official flags; the paper's batch size 1")


#: Net name -> optimiser name (official optimizer_G, _E, _D, _D2).
OPTIMIZER_OF = {"netG": "G", "netE": "E", "netD": "D", "netD2": "D2"}
_SMOKE = {"num_downs": 5, "netD": "basic_128_multi", "netD2": "basic_128_multi"}


class Pix2PixNoise(Method):
    """pix2pix+noise; also the shared training step of the whole family (an encoder adds terms)."""

    Config = Pix2PixNoiseConfig
    paired = True
    multimodal = True
    citation = CITATION
    official_code = OFFICIAL
    licence = "BSD"
    PRESETS = {"smoke": dict(_SMOKE)}
    RECIPE = _recipe(_BATCH1)
    has_encoder: ClassVar[bool] = False

    def __init__(self, cfg: Pix2PixNoiseConfig, device="cpu") -> None:
        super().__init__(cfg, device)
        c = cfg
        d_nc = 6 if c.conditional_D else 3
        nets = {"netG": define_G_z(c.where_add, 3, 3, c.nz, c.num_downs, c.ngf, c.norm, c.use_dropout)}
        if c.lambda_GAN > 0:
            nets["netD"] = define_D_multi(c.netD, d_nc, c.ndf, c.norm, c.num_Ds)
        if c.lambda_GAN2 > 0:
            nets["netD2"] = define_D_multi(c.netD2, d_nc, c.ndf, c.norm, c.num_Ds)
        if self.has_encoder:
            nets["netE"] = define_E(c.netE, 3, c.nz, c.nef, c.num_downs_E, c.norm, c.vae)
        self.nets = {k: init_weights(v, c.init_type, c.init_gain).to(self.device) for k, v in nets.items()}

    def make_optimizers(self):
        # One Adam per net, as the official model (optimizer_G, _E, _D, _D2).
        return {OPTIMIZER_OF[k]: adam(net.parameters(), self.cfg) for k, net in self.nets.items()}

    # ----------------------------------------------------------------- pieces of the step
    def prior(self, n: int) -> torch.Tensor:
        """z ~ N(0, I) from the global (seeded, checkpointed) RNG, like the official get_z_random."""
        return torch.randn(n, self.cfg.nz).to(self.device)

    def split(self, A: torch.Tensor, B: torch.Tensor):
        """(encoded pair or None, random pair or None): halves when both branches train (or `split_batch`, which
        discards the half of the branch that does not train, like the official forward), else the whole batch."""
        c = self.cfg
        if c.encoded_branch and c.random_branch or c.split_batch:
            if A.size(0) % 2:
                raise UsageError(f"{self.name} splits each batch into encoded and random halves; got an odd batch "
                                 f"of {A.size(0)} (set an even batch_size)")
            h = A.size(0) // 2
            enc, rnd = (A[:h], B[:h]), (A[h:], B[h:])
            return (enc if c.encoded_branch else None), (rnd if c.random_branch else None)
        return ((A, B), None) if c.encoded_branch else (None, (A, B))

    def encoded_code(self, B: torch.Tensor):
        """(z, μ, log σ²) for the first branch; without an encoder z comes from the prior."""
        return self.prior(B.size(0)), None, None

    def encoder_terms(self, mu, logvar) -> dict[str, torch.Tensor]:
        return {}

    def latent_terms(self, fake: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def d_input(self, A: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        return torch.cat([A, img], 1) if self.cfg.conditional_D else img

    def adversarial(self, key: str, A: torch.Tensor, img: torch.Tensor, real: bool) -> torch.Tensor:
        """GAN loss summed over the scales of discriminator `key` ('netD' or 'netD2')."""
        return multiscale_gan_loss(self.nets[key](self.d_input(A, img)), real, self.cfg.gan_mode)

    def update_D(self, key: str, real: tuple, fake: tuple) -> torch.Tensor:
        """One step of D or D2 on (A, B) pairs: GAN(fake, 0) + GAN(real, 1), no 0.5 (official backward_D)."""
        opt = self.optimizers[OPTIMIZER_OF[key]]
        opt.zero_grad(set_to_none=True)
        loss = self.adversarial(key, fake[0], fake[1].detach(), False) + self.adversarial(key, *real, True)
        loss.backward()
        opt.step()
        return loss

    # ----------------------------------------------------------------- training
    def train_step(self, batch):
        c, n, opt = self.cfg, self.nets, self.optimizers
        A, B = batch["A"].to(self.device), batch["B"].to(self.device)
        enc, rnd = self.split(A, B)
        Ds = [n[k] for k in ("netD", "netD2") if k in n]
        gen_opts = [opt[k] for k in ("G", "E") if k in opt]

        # 1) G and E (official update_G_and_E), Ds frozen.
        set_requires_grad(Ds, False)
        for o in gen_opts:
            o.zero_grad(set_to_none=True)
        losses: dict[str, torch.Tensor] = {}
        if enc is not None:
            A1, B1 = enc
            z, mu, logvar = self.encoded_code(B1)
            fake_enc = n["netG"](A1, z)
            if c.lambda_GAN > 0:
                losses["G_GAN"] = c.lambda_GAN * self.adversarial("netD", A1, fake_enc, True)
            if c.lambda_L1 > 0:
                losses["G_L1"] = c.lambda_L1 * F.l1_loss(fake_enc, B1)
            losses.update(self.encoder_terms(mu, logvar))
        if rnd is not None:
            A2, B2 = rnd
            # Official: the random-z fakes are made from the encoded half's inputs A₁ (see module doc).
            A_rand = A2 if enc is None or c.random_branch_own_A else enc[0]
            z_rand = self.prior(A_rand.size(0))
            fake_rand = n["netG"](A_rand, z_rand)
            if c.lambda_GAN2 > 0:
                losses["G_GAN2"] = c.lambda_GAN2 * self.adversarial("netD2", A_rand, fake_rand, True)
            losses.update(self.latent_terms(fake_rand, z_rand))
        sum(losses.values()).backward()
        for o in gen_opts:
            o.step()

        # 2) D on the encoded branch, D2 on the random branch (official update_D).
        set_requires_grad(Ds, True)
        if "netD" in n:
            losses["D"] = self.update_D("netD", real=(A1, B1), fake=(A1, fake_enc))
        if "netD2" in n:
            losses["D2"] = self.update_D("netD2", real=(A2, B2), fake=(A_rand, fake_rand))
        return {k: v.detach() for k, v in losses.items()}

    # ----------------------------------------------------------------- inference
    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes from the prior N(0, I) (CPU generator if given), on the method's device."""
        return torch.randn(n, self.cfg.nz, generator=generator).to(self.device)

    @torch.no_grad()
    def translate(self, x, z=None, direction="AtoB"):
        """G(x, z) in eval mode; z=None draws one code per input from the prior."""
        self.check_direction(direction)
        x = x.to(self.device)
        z = self.sample_z(x.size(0)) if z is None else z.to(self.device)
        if z.shape != (x.size(0), self.cfg.nz):
            raise UsageError(f"z has shape {tuple(z.shape)}; {self.name} needs ({x.size(0)}, nz={self.cfg.nz})")
        G = self.nets["netG"]
        with eval_mode(G):
            return G(x, z)


class BicycleGAN(Pix2PixNoise):
    """BicycleGAN (cVAE-GAN + cLR-GAN); its subclasses are the paper's ablation variants."""

    Config = BicycleGANConfig
    PRESETS = {"smoke": {**_SMOKE, "num_downs_E": 2, "nef": 8}}
    RECIPE = _recipe(_BATCH2)
    has_encoder = True

    def encoded_code(self, B):
        out = self.nets["netE"](B)
        if not self.cfg.vae:
            return out, out, None  # cAE-GAN: deterministic z = E(B)
        mu, logvar = out
        return reparameterize(mu, logvar), mu, logvar

    def encoder_terms(self, mu, logvar):
        if self.cfg.lambda_kl <= 0:
            return {}
        return {"kl": self.cfg.lambda_kl * kl_to_standard_normal(mu, logvar, "sum")}

    def latent_terms(self, fake, z):
        """λ_z·‖μ(E(fake)) − z‖₁; E's weights get no gradient from it unless latent_updates_E."""
        c, E = self.cfg, self.nets["netE"]
        if c.lambda_z <= 0:
            return {}
        # Frozen while the graph is built, so the term's gradient flows through E's activations to G only
        # (the official code freezes E before its backward, with the same effect).
        frozen = not c.latent_updates_E
        if frozen:
            set_requires_grad(E, False)
        try:
            out = E(fake)
        finally:
            if frozen:
                set_requires_grad(E, True)
        mu = out[0] if c.vae else out
        return {"z_L1": c.lambda_z * F.l1_loss(mu, z)}

    def scoring_keys(self, direction: str = "AtoB") -> list[str]:
        """G translates; E gives the encoded reconstruction score (the official release ships both files)."""
        return ["netG", "netE"]

    @torch.no_grad()
    def encode(self, B: torch.Tensor) -> torch.Tensor:
        """μ of E(B) in eval mode (the official test's "encoded" sample uses μ, no noise)."""
        E = self.nets["netE"]
        with eval_mode(E):
            out = E(B.to(self.device))
        return out[0] if self.cfg.vae else out

    @torch.no_grad()
    def reconstruct(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """G(A, μ(E(B))): the paper's Table 1 reconstruction, scored as ‖B − G(A, E(B))‖₁.

        DataError (the score is then unavailable) when the test images are not the size E reads, e.g. maps
        tested at 512 px: the official test of that size runs without the encoder (--no_encode).
        """
        side = encoder_input_size(self.cfg.num_downs_E)
        if tuple(B.shape[-2:]) != (side, side):
            from bench.errors import DataError

            raise DataError(f"{self.name}'s encoder reads {side}x{side} images, the test images are "
                            f"{B.shape[-1]}x{B.shape[-2]} (test_load_size={self.cfg.test_load_size}); the official "
                            "test at this size runs without the encoder (--no_encode)")
        return self.translate(A, self.encode(B))


class CAEGAN(BicycleGAN):
    Config = CAEGANConfig
    RECIPE = _recipe(_BATCH1)


class CVAEGAN(BicycleGAN):
    Config = CVAEGANConfig
    RECIPE = _recipe(Setting(2, src(BGR, "models/bicycle_gan_model.py",
                                    "forward: first half encoded, second half unused with --lambda_GAN2 0 "
                                    "--lambda_z 0; --batch_size 2")))


class CVAEGANPlusPlus(BicycleGAN):
    Config = CVAEGANPlusPlusConfig


class CLRGAN(BicycleGAN):
    Config = CLRGANConfig
    RECIPE = _recipe(_BATCH1)
