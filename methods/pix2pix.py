"""pix2pix: paired translation with a U-Net generator, a conditional PatchGAN and an L1 term.

Isola, Zhu, Zhou, Efros. "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017.
Official code: junyanz/pytorch-CycleGAN-and-pix2pix@00d5574 (BSD), models/pix2pix_model.py.
Paper defaults from reference/methods.md §2.2: unet_256 with BatchNorm and dropout (54,413,955 params),
70×70 PatchGAN with BatchNorm on concat(A, B) = 6 channels (2,768,705), vanilla (BCE-with-logits) GAN,
λ_L1 = 100, no image pool, init normal(0, 0.02), Adam 2e-4 (0.5, 0.999), 100+100 epochs, batch 1,
update order D then G, D loss 0.5·(real + fake).

Test-time behaviour (`test_mode_train_bn`, default True = official): the official test.py does not call
`--eval`, so the generator keeps dropout active and normalises with the statistics of each test batch,
and that batch has size 1. `translate` reproduces this: one image at a time (so the result does not depend on
the evaluation batch size), dropout on, batch statistics, without touching the running averages
(the official run updates them, which never matters there because nothing reads them afterwards).
`test_mode_train_bn=False` gives the usual eval mode (running statistics, no dropout).

Depth (`num_downs`): unet_256 has 8 stride-2 stages and needs crops that are multiples of 256 px;
unet_128 has 7. The smoke preset uses 5 to fit 32 px; nothing else changes.

`paper` preset (RECIPE; `bench methods --recipe pix2pix`): facades is `scripts/train_pix2pix.sh`
(`--netG unet_256 --direction BtoA --lambda_L1 100 --norm batch --pool_size 0`, i.e. the code defaults, and
BtoA = bench's default label2photo); maps and cityscapes have no script in the repository and run the code
defaults (100+100 epochs, load 286 -> crop 256, bicubic).

Training: the one-step float64 audit of issue #14 matches the official code to round-off. The learning
rate follows the official train.py, which steps the schedulers at the *start* of every epoch
(`lr_update=epoch_start`, default: the decay starts in epoch 100 and epoch 200 trains with lr 0);
`lr_update=epoch_end` is the CUT family's loop. What bench does differently is harness-wide (README): crops,
flips and the data order come from a generator seeded by (seed, epoch, index) instead of the global RNGs.
BicycleGAN's repository ships its own pix2pix whose λ_L1 is 10 by accident (it sets `lambda_l1`, reads
`lambda_L1`; methods.md §6.10); this is the CycleGAN repository's pix2pix with λ_L1 = 100.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError
from methods.base import Method, adam, discriminator_step, set_requires_grad
from methods.config import MethodConfig
from methods.cyclegan import LR_UPDATES, cgr_lr_lambda, cgr_lr_setting
from methods.losses.gan import gan_loss
from methods.nets.init import init_weights
from methods.nets.multiscale import patch_map_size
from methods.nets.patchgan import define_D
from methods.nets.unet import MIN_DOWNS, UnetGenerator
from methods.recipes import CGR, DatasetRecipe, Recipe, Setting, resize_and_crop, src


@dataclass(frozen=True)
class Pix2PixConfig(MethodConfig):
    #: U-Net depth: 8 = unet_256, 7 = unet_128; crop_size must be a multiple of 2**num_downs.
    num_downs: int = 8
    norm: str = "batch"
    use_dropout: bool = True
    netD: str = "basic"
    n_layers_D: int = 3
    gan_mode: str = "vanilla"
    lambda_L1: float = 100.0
    #: Official test behaviour: dropout on and per-image batch statistics in `translate` (see module doc).
    test_mode_train_bn: bool = True
    #: epoch_start = the official train.py (update_learning_rate before each epoch); epoch_end = CUT's loop.
    lr_update: str = "epoch_start"

    CHOICES: ClassVar[dict] = {**MethodConfig.CHOICES, "norm": ("batch", "instance", "none"),
                               "netD": ("basic", "n_layers", "pixel"),
                               "gan_mode": ("vanilla", "lsgan", "wgangp", "hinge"), "lr_update": LR_UPDATES}

    def validate(self) -> None:
        super().validate()
        check_unet_depth(self.num_downs, self.crop_size)
        n_layers = 3 if self.netD == "basic" else self.n_layers_D
        if self.netD != "pixel" and patch_map_size(self.crop_size, n_layers) < 1:
            raise ConfigError(f"netD={self.netD} with {n_layers} layers does not fit crop_size={self.crop_size}; "
                              "use a larger crop or --set netD=n_layers n_layers_D=2")
        if self.lambda_L1 < 0:
            raise ConfigError(f"lambda_L1 must be >= 0, got {self.lambda_L1}")


def check_unet_depth(num_downs: int, crop_size: int) -> None:
    """The U-Net halves the image num_downs times: crop_size must be a multiple of 2**num_downs."""
    if num_downs < MIN_DOWNS:
        raise ConfigError(f"num_downs must be >= {MIN_DOWNS}, got {num_downs}")
    if crop_size % 2**num_downs:
        fits = max((n for n in range(MIN_DOWNS, 12) if crop_size % 2**n == 0), default=None)
        hint = f"--set num_downs={fits}" if fits else f"a crop_size that is a multiple of {2**MIN_DOWNS}"
        raise ConfigError(f"num_downs={num_downs} needs crop_size to be a multiple of {2**num_downs} "
                          f"(got {crop_size}); use {hint} (unet_256 = 8, unet_128 = 7)")


_P2P = "models/pix2pix_model.py"
RECIPE = Recipe(
    code=CGR,
    defaults={**resize_and_crop(CGR, epochs=(100, 100), sampling=False),
              "lr": Setting(2e-4, src(CGR, "options/train_options.py", "--lr")),
              "norm": Setting("batch", src(CGR, _P2P, "modify_commandline_options norm='batch'")),
              "gan_mode": Setting("vanilla", src(CGR, _P2P, "gan_mode='vanilla'")),
              "lambda_L1": Setting(100.0, src(CGR, _P2P, "--lambda_L1 100")),
              "lr_update": cgr_lr_setting()},
    datasets={"facades": DatasetRecipe(src(CGR, "scripts/train_pix2pix.sh",
                                           "--netG unet_256 --direction BtoA --lambda_L1 100 --dataset_mode aligned "
                                           "--norm batch --pool_size 0: the code defaults"))},
    default_command="python train.py --dataroot ./datasets/<dataset> --model pix2pix (code defaults; "
                    "no script for this dataset)",
    test=Setting("resize to crop_size x crop_size (256), bicubic; dropout and batch statistics on (no --eval)",
                 src(CGR, "options/test_options.py", "load_size = crop_size; test.py without --eval")),
)


@contextlib.contextmanager
def eval_mode(*nets: nn.Module) -> Iterator[None]:
    """Put nets in eval mode for the block and restore each one's previous mode afterwards."""
    modes = [net.training for net in nets]
    try:
        for net in nets:
            net.eval()
        yield
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)


@contextlib.contextmanager
def batch_stat_mode(net: nn.Module) -> Iterator[None]:
    """Train mode (dropout on, BatchNorm on batch statistics) without updating BatchNorm running averages."""
    mode = net.training
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    try:
        net.train()
        for bn in bns:
            # With track_running_stats off, a training-mode BN normalises by the batch and leaves the buffers alone.
            bn.track_running_stats = False
        yield
    finally:
        for bn in bns:
            bn.track_running_stats = True
        net.train(mode)


class Pix2Pix(Method):
    Config = Pix2PixConfig
    paired = True
    citation = "Isola et al., Image-to-Image Translation with Conditional Adversarial Networks, CVPR 2017"
    official_code = "junyanz/pytorch-CycleGAN-and-pix2pix@00d5574"
    licence = "BSD"
    PRESETS = {"smoke": {"num_downs": 5}}
    RECIPE = RECIPE

    def __init__(self, cfg: Pix2PixConfig, device="cpu") -> None:
        super().__init__(cfg, device)
        G = UnetGenerator(3, 3, cfg.num_downs, cfg.ngf, cfg.norm, cfg.use_dropout)
        # Conditional D: it sees the input and the (real or fake) output stacked, 3 + 3 channels.
        D = define_D(cfg.netD, 6, cfg.ndf, cfg.n_layers_D, cfg.norm)
        self.nets = {"netG": init_weights(G, cfg.init_type, cfg.init_gain).to(self.device),
                     "netD": init_weights(D, cfg.init_type, cfg.init_gain).to(self.device)}

    def lr_lambda(self, step: int) -> float:
        """The linear policy, stepped at the epoch start like the official train.py (`lr_update`)."""
        return cgr_lr_lambda(self.cfg, step)

    def make_optimizers(self):
        return {"G": adam(self.nets["netG"].parameters(), self.cfg), "D": adam(self.nets["netD"].parameters(), self.cfg)}

    def train_step(self, batch):
        c, n, opt = self.cfg, self.nets, self.optimizers
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        fake_B = n["netG"](real_A)

        # D first (pix2pix_model.optimize_parameters): fake pair, then real pair.
        loss_D_real, loss_D_fake = discriminator_step(n["netD"], opt["D"], torch.cat((real_A, real_B), 1),
                                                      torch.cat((real_A, fake_B.detach()), 1), c.gan_mode)

        set_requires_grad(n["netD"], False)
        opt["G"].zero_grad(set_to_none=True)
        loss_G_GAN = gan_loss(n["netD"](torch.cat((real_A, fake_B), 1)), True, c.gan_mode)
        loss_G_L1 = F.l1_loss(fake_B, real_B) * c.lambda_L1
        (loss_G_GAN + loss_G_L1).backward()
        opt["G"].step()
        set_requires_grad(n["netD"], True)
        losses = {"G_GAN": loss_G_GAN, "G_L1": loss_G_L1, "D_real": loss_D_real, "D_fake": loss_D_fake}
        return {k: v.detach() for k, v in losses.items()}

    @torch.no_grad()
    def translate(self, x, z=None, direction="AtoB"):
        """G(x) with the configured test behaviour (official: dropout + per-image batch statistics)."""
        self.check_direction(direction)
        G, x = self.nets["netG"], x.to(self.device)
        if not self.cfg.test_mode_train_bn:
            with eval_mode(G):
                return G(x)
        with batch_stat_mode(G):
            # The official test loop runs batch 1; batch statistics make each output depend on its batch.
            return torch.cat([G(x[i:i + 1]) for i in range(x.size(0))])
