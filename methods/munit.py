"""MUNIT: multimodal unsupervised translation with a shared content space and per-domain style codes.

Huang, Liu, Belongie, Kautz. "Multimodal Unsupervised Image-to-Image Translation", ECCV 2018. Official code:
NVlabs/MUNIT@a82e222 (CC BY-NC-SA 4.0, non-commercial). Paper defaults from reference/methods.md §2.10 (the
summer2winter_yosemite256 config): per domain an AdaIN auto-encoder (gen_a, gen_b: dim 64, 2 down-samplings,
4 residual blocks, style_dim 8, MLP 256, reflect padding) and a 3-scale LSGAN discriminator (dis_a, dis_b:
dim 64, 4 layers, no norm, lrelu); losses gan 1, image recon 10, style recon 1, content recon 1, cycle 10
(vgg 0: the domain-invariant perceptual loss is not implemented); Adam lr 1e-4, β (0.5, 0.999), weight
decay 1e-4; lr ×0.5 every 100k iterations, 1M iterations, batch 1; update order D then G.
Init: kaiming (fan_in) on every conv/linear of the generators and N(0, 0.02) on the discriminators (the
official trainer applies kaiming to everything, then re-initialises the discriminators with 'gaussian').

Test time: content of the input from its domain's encoder, style drawn from N(0, I) (or given), decoded by
the other domain's generator; `sample_z(n)` draws the style codes for the LPIPS-diversity protocol.

Schedule in the harness: MUNIT counts iterations (`schedule_unit = "iteration"`). `lr_lambda(it)` is a
pure function of the 0-based global iteration; `max_iterations()` (= `iterations`, 1M) is the run length
(where the loop does not stop there by itself, cap the run with `--set train.max_iters=1000000`).
`n_epochs` is only the epoch bound of the loop (one epoch = one pass over max(|A|, |B|) images); the default
1000 covers 1M iterations for any dataset with ≥ 1000 images per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.errors import ConfigError, UsageError
from methods.base import Method, adam, backward, optimizer_step, parameters_of, set_requires_grad
from methods.config import MethodConfig
from methods.losses.gan import multiscale_gan_loss
from methods.nets.init import init_weights
from methods.nets.munit import ACTIVATIONS, PADS, AdaINGen, MsImageDis, min_image_size


@dataclass(frozen=True)
class MUNITConfig(MethodConfig):
    # data: official new_size 256 (shorter side) -> random crop 256 + flip
    load_size: int = 256
    crop_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 1e-4
    init_type: str = "kaiming"
    #: The discriminators are re-initialised with N(0, init_gain) ('gaussian') after the kaiming pass.
    init_type_D: str = "normal"
    # generator (gen: in the official YAML); ngf = gen.dim
    style_dim: int = 8
    mlp_dim: int = 256
    n_downsample: int = 2
    n_res: int = 4
    activ: str = "relu"
    pad_type: str = "reflect"
    # discriminator (dis: in the official YAML); ndf = dis.dim
    n_layer: int = 4
    norm_D: str = "none"
    activ_D: str = "lrelu"
    num_scales: int = 3
    pad_type_D: str = "reflect"
    gan_mode: str = "lsgan"
    # loss weights
    gan_w: float = 1.0
    recon_x_w: float = 10.0
    recon_s_w: float = 1.0
    recon_c_w: float = 1.0
    recon_x_cyc_w: float = 10.0
    # schedule: StepLR(step_size, gamma) stepped once per iteration, before the update
    iterations: int = 1_000_000
    step_size: int = 100_000
    gamma: float = 0.5
    #: Epoch bound of the harness loop only (see the module docstring); the run stops at `iterations`.
    n_epochs: int = 1000
    n_epochs_decay: int = 0

    CHOICES: ClassVar[dict] = {**MethodConfig.CHOICES,
                               "init_type_D": ("normal", "xavier", "kaiming", "orthogonal", "none"),
                               "activ": ACTIVATIONS, "activ_D": ACTIVATIONS, "pad_type": PADS, "pad_type_D": PADS,
                               "norm_D": ("none", "in", "ln", "bn"),
                               # the official 'nsgan' is BCE on sigmoid outputs = 'vanilla' here
                               "gan_mode": ("lsgan", "vanilla")}

    def validate(self) -> None:
        super().validate()
        for name in ("style_dim", "mlp_dim", "n_layer", "num_scales", "iterations", "step_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_res < 0 or self.n_downsample < 0:
            raise ConfigError("n_res and n_downsample must be >= 0")
        if self.crop_size % 2**self.n_downsample:
            raise ConfigError(f"crop_size {self.crop_size} must be divisible by 2**n_downsample "
                              f"({2**self.n_downsample}) so the decoder restores the input size")
        smallest = min_image_size(self.n_layer, self.num_scales)
        if self.crop_size < smallest:
            raise ConfigError(f"crop_size {self.crop_size} is too small for a {self.num_scales}-scale, "
                              f"{self.n_layer}-layer discriminator (needs >= {smallest} px); raise crop_size "
                              f"or lower num_scales/n_layer")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")


class MUNIT(Method):
    Config = MUNITConfig
    two_way = True
    multimodal = True
    schedule_unit = "iteration"
    citation = "Huang et al., Multimodal Unsupervised Image-to-Image Translation, ECCV 2018"
    official_code = "NVlabs/MUNIT@a82e222"
    licence = "CC BY-NC-SA 4.0"
    # 64 px is the smallest image a 3-scale, 4-layer discriminator accepts (the architecture is unchanged);
    # 64 iterations = the smoke schedule's 2 epochs of the 32-image toy set, lr halved once halfway.
    PRESETS = {"smoke": {"load_size": 64, "crop_size": 64, "ngf": 8, "ndf": 8, "mlp_dim": 16, "n_res": 2,
                         "iterations": 64, "step_size": 32}}

    def __init__(self, cfg: MUNITConfig, device="cpu") -> None:
        super().__init__(cfg, device)
        with self.device:
            def G():
                return AdaINGen(3, cfg.ngf, cfg.style_dim, cfg.n_downsample, cfg.n_res, cfg.activ, cfg.pad_type,
                                cfg.mlp_dim)

            def D():
                return MsImageDis(3, cfg.ndf, cfg.n_layer, cfg.norm_D, cfg.activ_D, cfg.num_scales, cfg.pad_type_D)

            self.nets = {"gen_a": G(), "gen_b": G(), "dis_a": D(), "dis_b": D()}
        # Follows MUNIT@a82e222:trainer.py MUNIT_Trainer.__init__ (weights_init(init), then 'gaussian' on dis).
        for k in ("gen_a", "gen_b"):
            init_weights(self.nets[k], cfg.init_type, cfg.init_gain)
        for k in ("dis_a", "dis_b"):
            init_weights(self.nets[k], cfg.init_type_D, cfg.init_gain)

    # ----------------------------------------------------------------- schedule
    def lr_lambda(self, step: int) -> float:
        """Multiplier at 0-based iteration `step`: gamma ** ((step + 1) // step_size).

        The official loop calls `scheduler.step()` at the top of every iteration, before the update, so the
        first halving already applies to iteration step_size - 1 (0-based).
        Follows MUNIT@a82e222:train.py (update_learning_rate first) and utils.py get_scheduler ('step').
        """
        return self.cfg.gamma ** ((step + 1) // self.cfg.step_size)

    def max_iterations(self) -> int:
        """Where the run ends (official `max_iter`)."""
        return self.cfg.iterations

    def make_optimizers(self):
        n, c = self.nets, self.cfg

        return {"gen": adam(parameters_of(n["gen_a"], n["gen_b"]), c),
                "dis": adam(parameters_of(n["dis_a"], n["dis_b"]), c)}

    # ----------------------------------------------------------------- training
    def _random_style(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.style_dim, 1, 1, device=self.device)

    def train_step(self, batch):
        x_a, x_b = batch["A"].to(self.device), batch["B"].to(self.device)
        losses = self.step_D(x_a, x_b)
        losses.update(self.step_G(x_a, x_b))
        return losses

    def step_D(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Discriminator update on cross-domain translations with random styles (summed over scales)."""
        c, n = self.cfg, self.nets
        self.optimizers["dis"].zero_grad(set_to_none=True)
        s_a, s_b = self._random_style(x_a.size(0)), self._random_style(x_b.size(0))
        # The fakes are detached in the official code; no graph is needed to compute them.
        with torch.no_grad():
            c_a, c_b = n["gen_a"].enc_content(x_a), n["gen_b"].enc_content(x_b)
            x_ba = n["gen_a"].decode(c_b, s_a)
            x_ab = n["gen_b"].decode(c_a, s_b)

        def d_loss(dis, fake, real):
            return (multiscale_gan_loss(dis(fake), False, c.gan_mode)
                    + multiscale_gan_loss(dis(real), True, c.gan_mode))

        L = {"dis_a": d_loss(n["dis_a"], x_ba, x_a), "dis_b": d_loss(n["dis_b"], x_ab, x_b)}
        L["dis_total"] = c.gan_w * L["dis_a"] + c.gan_w * L["dis_b"]
        backward(L["dis_total"])
        optimizer_step(self.optimizers["dis"])
        return {k: v.detach() for k, v in L.items()}

    def step_G(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Generator update: within-domain, latent and cycle reconstructions plus the adversarial terms."""
        c, n = self.cfg, self.nets
        gen_a, gen_b = n["gen_a"], n["gen_b"]
        set_requires_grad([n["dis_a"], n["dis_b"]], False)
        try:
            self.optimizers["gen"].zero_grad(set_to_none=True)
            s_a, s_b = self._random_style(x_a.size(0)), self._random_style(x_b.size(0))
            c_a, s_a_prime = gen_a.encode(x_a)
            c_b, s_b_prime = gen_b.encode(x_b)
            x_a_recon = gen_a.decode(c_a, s_a_prime)
            x_b_recon = gen_b.decode(c_b, s_b_prime)
            x_ba = gen_a.decode(c_b, s_a)
            x_ab = gen_b.decode(c_a, s_b)
            c_b_recon, s_a_recon = gen_a.encode(x_ba)
            c_a_recon, s_b_recon = gen_b.encode(x_ab)
            L = {"gen_recon_x_a": F.l1_loss(x_a_recon, x_a), "gen_recon_x_b": F.l1_loss(x_b_recon, x_b),
                 "gen_recon_s_a": F.l1_loss(s_a_recon, s_a), "gen_recon_s_b": F.l1_loss(s_b_recon, s_b),
                 "gen_recon_c_a": F.l1_loss(c_a_recon, c_a), "gen_recon_c_b": F.l1_loss(c_b_recon, c_b),
                 "gen_adv_a": multiscale_gan_loss(n["dis_a"](x_ba), True, c.gan_mode),
                 "gen_adv_b": multiscale_gan_loss(n["dis_b"](x_ab), True, c.gan_mode)}
            if c.recon_x_cyc_w > 0:
                # Cycle with the *encoded* style of the input (style-augmented cycle consistency).
                L["gen_cycrecon_x_a"] = F.l1_loss(gen_a.decode(c_a_recon, s_a_prime), x_a)
                L["gen_cycrecon_x_b"] = F.l1_loss(gen_b.decode(c_b_recon, s_b_prime), x_b)
            else:
                L["gen_cycrecon_x_a"] = L["gen_cycrecon_x_b"] = torch.zeros((), device=self.device)
            L["gen_total"] = (c.gan_w * (L["gen_adv_a"] + L["gen_adv_b"])
                              + c.recon_x_w * (L["gen_recon_x_a"] + L["gen_recon_x_b"])
                              + c.recon_s_w * (L["gen_recon_s_a"] + L["gen_recon_s_b"])
                              + c.recon_c_w * (L["gen_recon_c_a"] + L["gen_recon_c_b"])
                              + c.recon_x_cyc_w * (L["gen_cycrecon_x_a"] + L["gen_cycrecon_x_b"]))
            backward(L["gen_total"])
            optimizer_step(self.optimizers["gen"])
        finally:
            set_requires_grad([n["dis_a"], n["dis_b"]], True)
        return {k: v.detach() for k, v in L.items()}

    # ----------------------------------------------------------------- inference
    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` style codes from the prior N(0, I), shape (n, style_dim)."""
        return torch.randn(n, self.cfg.style_dim, generator=generator).to(self.device)

    @torch.no_grad()
    def translate(self, x, z=None, direction="AtoB"):
        """Content of `x` from its domain, style `z` (n, style_dim[, 1, 1]) or a random one, decoded in the other."""
        self.check_direction(direction)
        src, dst = ("gen_a", "gen_b") if direction == "AtoB" else ("gen_b", "gen_a")
        x = x.to(self.device)
        if z is None:
            z = self.sample_z(x.size(0))
        z = z.to(self.device).reshape(z.size(0), -1)
        if z.shape != (x.size(0), self.cfg.style_dim):
            raise UsageError(f"style codes must have shape ({x.size(0)}, {self.cfg.style_dim}); got {tuple(z.shape)}")
        content = self.nets[src].enc_content(x)
        return self.nets[dst].decode(content, z[:, :, None, None])

    def encode_style(self, x: torch.Tensor, domain: str = "B") -> torch.Tensor:
        """Style code (n, style_dim) of images `x` from domain 'A' or 'B' (example-guided translation)."""
        if domain not in ("A", "B"):
            raise UsageError(f"domain must be 'A' or 'B', got {domain!r}")
        with torch.no_grad():
            return self.nets["gen_a" if domain == "A" else "gen_b"].enc_style(x.to(self.device)).flatten(1)

    def generator_keys(self) -> list[str]:
        return ["gen_a", "gen_b"]
