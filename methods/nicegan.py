"""NICE-GAN (full and light): the discriminators' first layers are the encoders.

Chen, Huang, Huang, Sun, Fang. "Reusing Discriminators for Encoding: Towards Unsupervised Image-to-Image
Translation", CVPR 2020. Official code: alpc91/NICE-GAN-pytorch@1b114f1 (MIT). Paper defaults from
reference/methods.md §2.8: per domain one discriminator (SN convs; encoder + CAM, a local 70-px head and a
global 286-px head) and one AdaILN generator that decodes the *other* domain's code; LSGAN on local, global
and CAM logits; cycle 10 and reconstruction 10 (L1), adversarial 1; Adam lr 1e-4, β (0.5, 0.999), weight
decay 1e-4 on both optimisers; PyTorch default init; batch 1; 300k iterations with linear decay to 0 over
the second half; update order D then G.

Decoupled training: the encoder lives in the discriminator and only the discriminator optimiser updates
it. The generator step uses codes from the (frozen) encoders and back-propagates through the
discriminators to the generators only.

Schedule in the harness: NICE-GAN counts *iterations*, not epochs (`schedule_unit = "iteration"`).
`lr_lambda(it)` is a pure function of the 0-based global iteration and of `iterations`/`decay_start`, so
the learning rate follows the paper whatever the dataset size. The run length is `iterations` (300k,
`max_iterations()`): the loop runs as many of its epochs (one epoch = max(|A|, |B|) iterations) as the budget
needs, whatever the dataset size (a 400-image dataset runs 750 epochs), and the lr decays linearly over the
second half as in the official loop. `n_epochs`/`n_epochs_decay` are not used. A smaller budget
(`--set iterations=N`, a preset, `train.max_iters`) is recorded as a cut schedule (bench.schedule).

Data (`paper` preset, RECIPE; `bench methods --recipe nicegan`; every dataset runs README.md's
`python main.py --dataset <name>`): the official loader's Compose order, RandomHorizontalFlip -> torchvision
`Resize((img_size + 30, img_size + 30))`, whose default filter is bilinear -> RandomCrop(img_size), so 286 ->
256 bilinear with the flip first; test `Resize((img_size, img_size))` bilinear. A and B come from two shuffled
DataLoaders that are re-created when exhausted: each domain is drawn without replacement, independently
(`sampling=cycle`).

Cost: each full generator's first FC maps the flattened 64×64×256 code to 256 values (268,435,456
weights), so the full model has 646,697,986 parameters (2.6 GB fp32; + gradients + Adam's two moments =
10.4 GB) and the light one 109,958,146. Measured peak memory of a training step (CPU, batch 1, one thread,
this project's 24 GiB machine; `/usr/bin/time -v`, glibc with MALLOC_MMAP_THRESHOLD_=65536 so that freed
blocks are returned and the number is the tensors' own peak):
    full  128 px 6.1 GB, 256 px 15.5 GB (steady 11.3 GB; the FC's 1 GB weight gradients from the three
          calls of each generator coexist in backward);
    light 128 px 3.9 GB, 256 px 7.0 GB.
With the default allocator the resident peak is 1-2 GB higher (light 256 px: 9.0 GB; full 256 px: above
17.7 GB). A step takes 20-80 s of one CPU core at 128-256 px, so the paper schedule (300k iterations) is a
GPU job: full at 256 px needs a 24 GB card (≥ 16 GB of tensors plus the CUDA context and caching
allocator); light fits in 8-12 GB (the official README: use `--light True` when memory is short).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.errors import ConfigError, UsageError
from methods.base import Method, adam, parameters_of, set_requires_grad
from methods.config import MethodConfig
from methods.losses.gan import gan_loss
from methods.nets.init import init_weights
from methods.nets.nice import NICEDiscriminator, NICEGenerator, min_image_size
from methods.recipes import NICER, Recipe, Setting, src
from methods.schedules import iteration_linear_decay

_BUILD = "NICE.py"
RECIPE = Recipe(
    code=NICER,
    defaults={"iterations": Setting(300_000, src(NICER, "main.py", "--iteration")),
              "decay_flag": Setting(True, src(NICER, "main.py", "--decay_flag; NICE.py train: lr -= lr/(iteration//2) "
                                                              "per step past iteration//2")),
              "lr": Setting(1e-4, src(NICER, "main.py", "--lr")),
              "weight_decay": Setting(1e-4, src(NICER, "main.py", "--weight_decay")),
              "load_size": Setting(286, src(NICER, _BUILD, "build_model: Resize((img_size + 30, img_size + 30))")),
              "crop_size": Setting(256, src(NICER, "main.py", "--img_size; NICE.py RandomCrop(img_size)")),
              "resize_filter": Setting("bilinear", src(NICER, _BUILD, "transforms.Resize (torchvision default "
                                                                      "BILINEAR)")),
              "resize_aspect": Setting("square", src(NICER, _BUILD, "Resize((h, w)) with both sides given")),
              "flip": Setting(True, src(NICER, _BUILD, "transforms.RandomHorizontalFlip()")),
              "flip_first": Setting(True, src(NICER, _BUILD, "Compose: RandomHorizontalFlip before Resize")),
              "sampling": Setting("cycle", src(NICER, _BUILD, "train: trainA_iter/trainB_iter, two shuffled "
                                                              "DataLoaders re-created when exhausted")),
              "batch_size": Setting(1, src(NICER, "main.py", "--batch_size"))},
    default_command=src(NICER, "README.md", "python main.py --dataset <dataset> (main.py defaults)"),
    test=Setting("resize to img_size x img_size (256), bilinear",
                 src(NICER, _BUILD, "test_transform: Resize((img_size, img_size))")),
)


@dataclass(frozen=True)
class NICEGANConfig(MethodConfig):
    # data: official flip -> Resize((img_size + 30,) * 2) bilinear -> RandomCrop(img_size), i.e. 286 -> 256
    resize_filter: str = "bilinear"
    flip_first: bool = True
    sampling: str = "cycle"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    #: PyTorch default init (the official code calls no init function).
    init_type: str = "none"
    #: ngf = ndf = the official `--ch` (the encoder's code feeds the generator, so they must agree).
    light: bool = False
    n_res: int = 6
    n_dis: int = 7
    adv_weight: float = 1.0
    cycle_weight: float = 10.0
    recon_weight: float = 10.0
    #: Official `--iteration`: the run length and the schedule's horizon.
    iterations: int = 300_000
    #: Official `--decay_flag`: linear decay to 0 from `decay_start` to `iterations`.
    decay_flag: bool = True
    #: None = iterations // 2 (the official halfway point).
    decay_start: int | None = None
    #: Not used: the run length is `iterations` (see the module docstring).
    n_epochs: int = 1
    n_epochs_decay: int = 0

    def validate(self) -> None:
        super().validate()
        if self.ngf != self.ndf:
            raise ConfigError(f"NICE-GAN needs ngf == ndf (the official --ch), got ngf={self.ngf}, ndf={self.ndf}")
        if self.crop_size % 4:
            raise ConfigError(f"crop_size must be a multiple of 4 for NICE-GAN, got {self.crop_size}")
        if self.n_dis < 6:
            raise ConfigError(f"n_dis must be >= 6 (the local and global heads need it), got {self.n_dis}")
        smallest = min_image_size(self.n_dis)
        if self.crop_size < smallest:
            raise ConfigError(f"crop_size {self.crop_size} is too small for n_dis={self.n_dis}: the global head "
                              f"needs >= {smallest} px; raise crop_size or lower n_dis (>= 6)")
        if self.n_res < 0:
            raise ConfigError(f"n_res must be >= 0, got {self.n_res}")
        if self.iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        if self.decay_start is not None and not 0 <= self.decay_start <= self.iterations:
            raise ConfigError(f"decay_start must be in [0, iterations={self.iterations}], got {self.decay_start}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")

    @property
    def decay_from(self) -> int:
        """First iteration (1-based, official `step`) whose lr is decayed: the end of the constant phase."""
        if not self.decay_flag:
            return self.iterations
        return self.iterations // 2 if self.decay_start is None else self.decay_start


@dataclass(frozen=True)
class NICEGANLightConfig(NICEGANConfig):
    light: bool = True


# Same code path at toy size: 96 px is the smallest image whose global head (n_dis 7) still has a logit.
# 64 iterations: the smoke scale of the 300k budget (decay over the second half as in the paper), whatever the
# dataset size (2 epochs of the 32-image toy set).
_SMOKE = {"load_size": 104, "crop_size": 96, "ngf": 8, "ndf": 8, "n_res": 2, "iterations": 64}


class NICEGAN(Method):
    Config = NICEGANConfig
    two_way = True
    schedule_unit = "iteration"
    citation = ("Chen et al., Reusing Discriminators for Encoding: Towards Unsupervised Image-to-Image "
                "Translation, CVPR 2020")
    official_code = "alpc91/NICE-GAN-pytorch@1b114f1"
    licence = "MIT"
    PRESETS = {"smoke": _SMOKE}
    RECIPE = RECIPE

    def __init__(self, cfg: NICEGANConfig, device="cpu") -> None:
        super().__init__(cfg, device)
        # Build directly on the target device: the full model is 2.6 GB, and on the meta device it is free
        # (parameter counts without allocating).
        with self.device:
            def G():
                return NICEGenerator(3, cfg.ngf, cfg.n_res, cfg.crop_size, cfg.light)

            def D():
                return NICEDiscriminator(3, cfg.ndf, cfg.n_dis)

            self.nets = {"gen2B": G(), "gen2A": G(), "disA": D(), "disB": D()}
        for net in self.nets.values():
            init_weights(net, cfg.init_type, cfg.init_gain)

    # ----------------------------------------------------------------- schedule
    def lr_lambda(self, step: int) -> float:
        """Multiplier at 0-based iteration `step`.

        The official loop (1-based `step`) subtracts lr/(iteration//2) *before* each step past the
        halfway point, so iteration `step` (0-based) trains with 1 - (step + 1 - h) / (T - h).
        Follows NICE-GAN-pytorch@1b114f1:NICE.py (train, decay_flag); for odd T the official lr ends
        slightly below 0, ours at 0.
        """
        c = self.cfg
        return iteration_linear_decay(step + 1, c.iterations, c.decay_from)

    @classmethod
    def schedule_length(cls, cfg) -> tuple[int, str]:
        """The official iteration budget (`iterations`); max_iterations() hands it to the loop."""
        return cfg.iterations, "iterations"

    def make_optimizers(self):
        n, c = self.nets, self.cfg

        # G_optim holds the generators only: the encoders (in disA/disB) are updated by D_optim alone.
        return {"G": adam(parameters_of(n["gen2B"], n["gen2A"]), c),
                "D": adam(parameters_of(n["disA"], n["disB"]), c)}

    # ----------------------------------------------------------------- training
    def train_step(self, batch):
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        losses = self.step_D(real_A, real_B)
        losses.update(self.step_G(real_A, real_B))
        return losses

    def step_D(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        """Discriminator (and encoder) update: LSGAN on local, global and CAM logits, summed."""
        c, n = self.cfg, self.nets
        self.optimizers["D"].zero_grad(set_to_none=True)
        real_LA, real_GA, real_A_cam, _, real_A_z = n["disA"](real_A)
        real_LB, real_GB, real_B_cam, _, real_B_z = n["disB"](real_B)
        # The fakes are detached in the official code; computing them without a graph gives the same values.
        with torch.no_grad():
            fake_A2B = n["gen2B"](real_A_z)
            fake_B2A = n["gen2A"](real_B_z)
        fake_LA, fake_GA, fake_A_cam, _, _ = n["disA"](fake_B2A)
        fake_LB, fake_GB, fake_B_cam, _, _ = n["disB"](fake_A2B)

        def d_loss(real, fake):
            return gan_loss(real, True, "lsgan") + gan_loss(fake, False, "lsgan")

        L = {"D_ad_loss_GA": d_loss(real_GA, fake_GA), "D_ad_loss_LA": d_loss(real_LA, fake_LA),
             "D_ad_cam_loss_A": d_loss(real_A_cam, fake_A_cam),
             "D_ad_loss_GB": d_loss(real_GB, fake_GB), "D_ad_loss_LB": d_loss(real_LB, fake_LB),
             "D_ad_cam_loss_B": d_loss(real_B_cam, fake_B_cam)}
        L["D_loss_A"] = c.adv_weight * (L["D_ad_loss_GA"] + L["D_ad_cam_loss_A"] + L["D_ad_loss_LA"])
        L["D_loss_B"] = c.adv_weight * (L["D_ad_loss_GB"] + L["D_ad_cam_loss_B"] + L["D_ad_loss_LB"])
        L["Discriminator_loss"] = L["D_loss_A"] + L["D_loss_B"]
        L["Discriminator_loss"].backward()
        self.optimizers["D"].step()
        return {k: v.detach() for k, v in L.items()}

    def step_G(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        """Generator update: adversarial + cycle + reconstruction; encoders and heads stay fixed."""
        c, n = self.cfg, self.nets
        disA, disB = n["disA"], n["disB"]
        # Frozen rather than merely left out of G_optim: same update as the official code, which lets the
        # gradients reach D and discards them at the next D step, without computing them.
        set_requires_grad([disA, disB], False)
        try:
            self.optimizers["G"].zero_grad(set_to_none=True)
            # Full discriminator passes (not only the encoder) so spectral-norm power iterations advance as
            # in the official code.
            real_A_z = disA(real_A)[4]
            real_B_z = disB(real_B)[4]
            fake_A2B = n["gen2B"](real_A_z)
            fake_B2A = n["gen2A"](real_B_z)
            fake_LA, fake_GA, fake_A_cam, _, fake_A_z = disA(fake_B2A)
            fake_LB, fake_GB, fake_B_cam, _, fake_B_z = disB(fake_A2B)
            fake_B2A2B = n["gen2B"](fake_A_z)
            fake_A2B2A = n["gen2A"](fake_B_z)
            fake_A2A = n["gen2A"](real_A_z)
            fake_B2B = n["gen2B"](real_B_z)

            L = {"G_ad_loss_GA": gan_loss(fake_GA, True, "lsgan"), "G_ad_loss_LA": gan_loss(fake_LA, True, "lsgan"),
                 "G_ad_cam_loss_A": gan_loss(fake_A_cam, True, "lsgan"),
                 "G_ad_loss_GB": gan_loss(fake_GB, True, "lsgan"), "G_ad_loss_LB": gan_loss(fake_LB, True, "lsgan"),
                 "G_ad_cam_loss_B": gan_loss(fake_B_cam, True, "lsgan"),
                 "G_cycle_loss_A": F.l1_loss(fake_A2B2A, real_A), "G_cycle_loss_B": F.l1_loss(fake_B2A2B, real_B),
                 "G_recon_loss_A": F.l1_loss(fake_A2A, real_A), "G_recon_loss_B": F.l1_loss(fake_B2B, real_B)}
            L["G_loss_A"] = (c.adv_weight * (L["G_ad_loss_GA"] + L["G_ad_cam_loss_A"] + L["G_ad_loss_LA"])
                             + c.cycle_weight * L["G_cycle_loss_A"] + c.recon_weight * L["G_recon_loss_A"])
            L["G_loss_B"] = (c.adv_weight * (L["G_ad_loss_GB"] + L["G_ad_cam_loss_B"] + L["G_ad_loss_LB"])
                             + c.cycle_weight * L["G_cycle_loss_B"] + c.recon_weight * L["G_recon_loss_B"])
            L["Generator_loss"] = L["G_loss_A"] + L["G_loss_B"]
            L["Generator_loss"].backward()
            self.optimizers["G"].step()
        finally:
            set_requires_grad([disA, disB], True)
        return {k: v.detach() for k, v in L.items()}

    # ----------------------------------------------------------------- inference
    @torch.no_grad()
    def translate(self, x, z=None, direction="AtoB"):
        """A->B: gen2B(encoder of disA(x)); B->A: gen2A(encoder of disB(x))."""
        self.check_direction(direction)
        size = self.cfg.crop_size
        if not self.cfg.light and tuple(x.shape[-2:]) != (size, size):
            raise UsageError(f"full NICE-GAN translates only {size}×{size} images (its FC layer is sized for "
                             f"crop_size); got {tuple(x.shape[-2:])}: resize the test images to {size}")
        enc, gen = ("disA", "gen2B") if direction == "AtoB" else ("disB", "gen2A")
        code = self.nets[enc].encode(x.to(self.device))[0]
        return self.nets[gen](code)

    def generator_keys(self) -> list[str]:
        # The encoders are part of the discriminators, so translating needs all four nets.
        return ["gen2B", "gen2A", "disA", "disB"]

    def scoring_keys(self, direction: str = "AtoB") -> list[str]:
        """A->B: disA's encoder and gen2B; B->A: disB's encoder and gen2A."""
        return ["disA", "gen2B"] if direction == "AtoB" else ["disB", "gen2A"]

    def official_entries(self, path, state):
        """The official `<dataset>_params_<step>.pt` / `_params_latest.pt`: one dict holding gen2B, gen2A, disA,
        disB (+ both optimisers and start_iter, ignored). Follows NICE-GAN-pytorch@1b114f1:NICE.py save/load."""
        nets = {k: state[k] for k in self.generator_keys() if isinstance(state.get(k), dict)}
        return nets or None


class NICEGANLight(NICEGAN):
    """NICE-GAN with the light generator: γ, β from the globally pooled code (8.1 M instead of 276 M)."""

    Config = NICEGANLightConfig
