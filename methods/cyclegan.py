"""CycleGAN: unpaired translation with two generators, two PatchGANs and cycle consistency.

Zhu, Park, Isola, Efros. "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks", ICCV 2017. Official code: junyanz/pytorch-CycleGAN-and-pix2pix@00d5574 (BSD).
Paper defaults from reference/methods.md §2.1: ResNet-9, IN, lsgan, λ_A=λ_B=10, λ_idt=0.5, pool 50,
lr 2e-4, 100+100 epochs, init normal(0, 0.02), update order G then D.

`paper` preset (RECIPE; `bench methods --recipe cyclegan`): the code defaults on every dataset. maps is
`scripts/train_cyclegan.sh` (`--model cycle_gan --pool_size 50 --no_dropout`, i.e. the defaults); the other
datasets have no script of their own and run the README's `python train.py --dataroot ./datasets/<name>
--model cycle_gan`. The CycleGAN paper trained its own Cityscapes runs at 128 px with ResNet-6; bench keeps
the code's 256 px, the setting of the CUT/DCLGAN comparison tables.

Learning rate: the official train.py steps the schedulers at the *start* of every epoch, so the decay
starts in epoch 100 (multiplier 1 - 1/101) and epoch 200 trains with lr 0; `lr_update=epoch_start` (default)
does the same, `epoch_end` is the CUT family's loop (one epoch later, last epoch at 1/101).
Training step: same as the official code (float64 audit, issue #14).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from methods.base import Method, adam, backward, discriminator_backward, optimizer_step, parameters_of, set_requires_grad
from methods.config import MethodConfig
from methods.losses.gan import gan_loss
from methods.nets.image_pool import ImagePool
from methods.nets.init import init_weights
from methods.nets.patchgan import define_D
from methods.nets.resnet import ResnetGenerator
from methods.recipes import CGR, DatasetRecipe, Recipe, Setting, resize_and_crop, resize_test, src
from methods.schedules import linear_decay

#: When the official loop steps its LambdaLR: CycleGAN/pix2pix's train.py at the epoch start, CUT's at the end.
LR_UPDATES = ("epoch_start", "epoch_end")


@dataclass(frozen=True)
class CycleGANConfig(MethodConfig):
    n_blocks: int = 9
    netD: str = "basic"
    n_layers_D: int = 3
    norm: str = "instance"
    use_dropout: bool = False
    gan_mode: str = "lsgan"
    lambda_A: float = 10.0
    lambda_B: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    #: CUT's re-implementation uses anti-aliased nets; the official CycleGAN does not.
    antialias: bool = False
    #: epoch_start = the official train.py (update_learning_rate before each epoch); epoch_end = CUT's loop.
    lr_update: str = "epoch_start"

    CHOICES: ClassVar[dict] = {**MethodConfig.CHOICES, "netD": ("basic", "n_layers", "pixel"),
                               "norm": ("instance", "batch", "none"),
                               "gan_mode": ("lsgan", "vanilla", "wgangp", "hinge"), "lr_update": LR_UPDATES}


def cgr_lr_lambda(cfg, step: int) -> float:
    """The CycleGAN repository's linear policy, stepped where its train.py steps it (`cfg.lr_update`)."""
    return linear_decay(step, cfg.n_epochs, cfg.n_epochs_decay, cfg.warmup_epochs,
                        at_epoch_start=cfg.lr_update == "epoch_start")


def cgr_lr_setting() -> Setting:
    return Setting("epoch_start", src(CGR, "train.py", "model.update_learning_rate() at the start of every epoch"))


RECIPE = Recipe(
    code=CGR,
    defaults={**resize_and_crop(CGR, epochs=(100, 100)),
              "lr": Setting(2e-4, src(CGR, "options/train_options.py", "--lr")),
              "lambda_identity": Setting(0.5, src(CGR, "models/cycle_gan_model.py", "--lambda_identity")),
              "pool_size": Setting(50, src(CGR, "options/train_options.py", "--pool_size")),
              "lr_update": cgr_lr_setting()},
    datasets={"maps": DatasetRecipe(src(CGR, "scripts/train_cyclegan.sh", "--dataroot ./datasets/maps --model "
                                            "cycle_gan --pool_size 50 --no_dropout: the code defaults")),
              "cityscapes": DatasetRecipe(
                  "python train.py --dataroot ./datasets/cityscapes --model cycle_gan (code defaults)",
                  note="the CycleGAN paper's Cityscapes runs used 128 px and ResNet-6 (maintainer in "
                       "junyanz/pytorch-CycleGAN-and-pix2pix#150: loadSize 143, fineSize 128); bench keeps the "
                       "code's 256 px, as in the CUT/DCLGAN tables (--set load_size=143 crop_size=128 n_blocks=6)")},
    default_command="python train.py --dataroot ./datasets/<dataset> --model cycle_gan (README; code defaults)",
    test=resize_test(CGR),
)


class CycleGAN(Method):
    Config = CycleGANConfig
    two_way = True
    POOLS = ("fake_A_pool", "fake_B_pool")
    citation = "Zhu et al., Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks, ICCV 2017"
    official_code = "junyanz/pytorch-CycleGAN-and-pix2pix@00d5574"
    licence = "BSD"
    RECIPE = RECIPE

    def __init__(self, cfg: CycleGANConfig, device="cpu") -> None:
        super().__init__(cfg, device)

        def G():
            return ResnetGenerator(3, 3, cfg.ngf, cfg.n_blocks, cfg.norm, cfg.use_dropout, antialias=cfg.antialias)

        def D():
            return define_D(cfg.netD, 3, cfg.ndf, cfg.n_layers_D, cfg.norm, antialias=cfg.antialias)

        self.nets = {"netG_A": G(), "netG_B": G(), "netD_A": D(), "netD_B": D()}
        for net in self.nets.values():
            init_weights(net, cfg.init_type, cfg.init_gain).to(self.device)
        self.fake_A_pool = ImagePool(cfg.pool_size)
        self.fake_B_pool = ImagePool(cfg.pool_size)

    def lr_lambda(self, step: int) -> float:
        """The linear policy, stepped at the epoch start like the official train.py (`lr_update`)."""
        return cgr_lr_lambda(self.cfg, step)

    def make_optimizers(self):
        n = self.nets
        return {
            "G": adam(parameters_of(n["netG_A"], n["netG_B"]), self.cfg),
            "D": adam(parameters_of(n["netD_A"], n["netD_B"]), self.cfg),
        }

    def train_step(self, batch):
        c, n = self.cfg, self.nets
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        fake_B = n["netG_A"](real_A)
        rec_A = n["netG_B"](fake_B)
        fake_A = n["netG_B"](real_B)
        rec_B = n["netG_A"](fake_A)

        # G_A and G_B (official order: generators first, then discriminators)
        set_requires_grad([n["netD_A"], n["netD_B"]], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        losses = {}
        if c.lambda_identity > 0:
            idt_A = n["netG_A"](real_B)
            idt_B = n["netG_B"](real_A)
            losses["idt_A"] = F.l1_loss(idt_A, real_B) * c.lambda_B * c.lambda_identity
            losses["idt_B"] = F.l1_loss(idt_B, real_A) * c.lambda_A * c.lambda_identity
        else:
            losses["idt_A"] = losses["idt_B"] = torch.zeros((), device=self.device)
        losses["G_A"] = gan_loss(n["netD_A"](fake_B), True, c.gan_mode)
        losses["G_B"] = gan_loss(n["netD_B"](fake_A), True, c.gan_mode)
        losses["cycle_A"] = F.l1_loss(rec_A, real_A) * c.lambda_A
        losses["cycle_B"] = F.l1_loss(rec_B, real_B) * c.lambda_B
        loss_G = sum(losses[k] for k in ("G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"))
        backward(loss_G)
        optimizer_step(self.optimizers["G"])

        set_requires_grad([n["netD_A"], n["netD_B"]], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        mode = self.cfg.gan_mode
        losses["D_A"] = discriminator_backward(n["netD_A"], real_B, self.fake_B_pool.query(fake_B), mode)
        losses["D_B"] = discriminator_backward(n["netD_B"], real_A, self.fake_A_pool.query(fake_A), mode)
        optimizer_step(self.optimizers["D"])
        return {k: v.detach() for k, v in losses.items()}

    @torch.no_grad()
    def translate(self, x, z=None, direction="AtoB"):
        self.check_direction(direction)
        net = self.nets["netG_A" if direction == "AtoB" else "netG_B"]
        return net(x.to(self.device))

