"""The contract every method fulfils; the training loop (`bench.train`) knows nothing else.

A method owns its networks (`nets`, keyed like the official code so released checkpoints load), its
optimisers (`optimizers`) and any extra training state (image pools). Per iteration the loop calls
`train_step(batch)`; it evaluates with `translate(x)`; it checkpoints `state_dict()`. A method calls
`backward(loss)` and `optimizer_step(opt)` (from here) instead of `loss.backward()` / `opt.step()`, so the loop
can run the step under fp16 autocast with a GradScaler (bench.precision).

Batches are dicts: ``{"A": (N,3,H,W) in [-1,1], "B": ..., "A_path": [...], "B_path": [...]}``;
A is always the source domain and B the target (the dataset applies the direction).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from bench.errors import UsageError
from bench.precision import backward, optimizer_step  # every method's backward and step (GradScaler under fp16)
from methods.config import MethodConfig, apply_overrides
from methods.losses.gan import gan_loss
from methods.recipes import Recipe

# Sizes and schedule lengths for a CPU smoke run. Applied only to the fields a method's config has.
# A preset never changes the algorithm (DESIGN.md §3).
SMOKE = {
    "load_size": 36,
    "crop_size": 32,
    "ngf": 8,
    "ndf": 8,
    "n_epochs": 1,
    "n_epochs_decay": 1,
    "warmup_epochs": 0,
    "num_patches": 32,
    "netF_nc": 32,
    # test at the smoke crop size (a recipe's official test resize, e.g. BicycleGAN maps at 512, is for 256 px)
    "test_load_size": 0,
    "test_crop_size": 0,
}

#: The official code's own defaults, whatever the dataset (the `paper` preset adds the per-dataset recipe).
CODE_DEFAULTS = "code-defaults"


class Method:
    """Base class. Subclasses set `Config`, build `nets` in `__init__`, implement `train_step`/`translate`."""

    Config: ClassVar[type[MethodConfig]] = MethodConfig
    #: Registry name, set by `methods.registry`.
    name: ClassVar[str] = ""
    #: Needs aligned (paired) training data.
    paired: ClassVar[bool] = False
    #: `translate` accepts a latent code `z` and gives several outputs per input.
    multimodal: ClassVar[bool] = False
    #: Learns both directions (translate(..., direction="BtoA") works).
    two_way: ClassVar[bool] = False
    #: Catalogue metrics of scope "method" this method supports beyond what every run scores
    #: (bench.metrics.catalog): "lpips_diversity" needs `sample_z`, "recon_l1" needs `reconstruct(A, B)`.
    #: Declared on the method's registry line (methods/registry.py), which sets it here.
    extra_metrics: ClassVar[tuple[str, ...]] = ()
    #: Paper, official repository@commit and licence of the official code; shown by `bench methods`.
    citation: ClassVar[str] = ""
    official_code: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    #: Extra per-method preset overrides merged over the generic ones, e.g. {"smoke": {"nz": 4}}.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Attributes holding an ImagePool whose contents are training state (saved in last.pt under these names).
    POOLS: ClassVar[tuple[str, ...]] = ()
    #: What the official scripts/configs run, per dataset, with sources (methods/recipes.py).
    RECIPE: ClassVar[Recipe | None] = None
    #: Scheduler unit: "epoch" (CycleGAN-style LambdaLR per epoch) or "iteration" (NICE-GAN, MUNIT).
    schedule_unit: ClassVar[str] = "epoch"

    def __init__(self, cfg: MethodConfig, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.epoch = 0

    # ----------------------------------------------------------------- configuration
    @classmethod
    def presets(cls) -> list[str]:
        """Every preset name this method accepts."""
        return sorted({CODE_DEFAULTS, "paper", "smoke", *cls.PRESETS})

    @classmethod
    def preset_overrides(cls, preset: str, dataset: str | None = None) -> dict[str, Any]:
        """The overrides a preset applies to this method's code defaults on `dataset`.

        `code-defaults`: none. `paper`: the official recipe (methods/recipes.py) for `dataset` (None: only its
        every-dataset settings). `smoke` and the method's own presets: `paper`, then their sizes/switches.
        """
        if preset not in cls.presets():
            from bench.errors import ConfigError

            raise ConfigError(f"unknown preset {preset!r} for {cls.name}; valid: {', '.join(cls.presets())}")
        if preset == CODE_DEFAULTS:
            return {}
        field_names = {f.name for f in dataclasses.fields(cls.Config)}
        merged = cls.RECIPE.paper_overrides(dataset) if cls.RECIPE is not None else {}
        if preset == "smoke":
            merged.update({k: v for k, v in SMOKE.items() if k in field_names})
        merged.update(cls.PRESETS.get(preset, {}))
        return merged

    @classmethod
    def make_config(cls, preset: str = "paper", overrides: Mapping[str, Any] | None = None,
                    dataset: str | None = None) -> MethodConfig:
        """Code defaults, then the preset (the official recipe for `dataset`), then user overrides; validated."""
        cfg = cls.Config()
        cfg = apply_overrides(cfg, cls.preset_overrides(preset, dataset))
        return apply_overrides(cfg, dict(overrides or {}))

    # ----------------------------------------------------------------- training
    def setup(self, batch: dict) -> None:
        """Data-dependent initialisation (e.g. CUT's lazy MLP head), then create the optimisers."""
        self.optimizers = self.make_optimizers()

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached scalar loss tensors keyed like the official loss_names."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (1-based, like the official `epoch_count`)."""
        self.epoch = epoch

    def data_jitter(self, epoch: int) -> bool:
        """Whether the training data uses load->crop jitter this epoch.

        Configs with `finetune_no_jitter` (the CUT family) stop it in the decay phase, after n_epochs.
        """
        return not (getattr(self.cfg, "finetune_no_jitter", False) and epoch > self.cfg.n_epochs)

    @classmethod
    def pipeline_for(cls, cfg: MethodConfig):
        """How the training data of `cfg` are read: the official loader's rule (bench.pipeline.Pipeline)."""
        return cfg.pipeline

    def data_pipeline(self):
        """`pipeline_for(self.cfg)`."""
        return self.pipeline_for(self.cfg)

    @classmethod
    def schedule_length(cls, cfg: MethodConfig) -> tuple[int, str]:
        """(length, unit) of a config's schedule: epochs here, iterations for budget methods (NICE-GAN, MUNIT)."""
        return cfg.total_epochs, "epochs"

    def max_iterations(self) -> int:
        """An iteration budget that ends training (NICE-GAN, MUNIT count iterations, not epochs); 0 = none."""
        length, unit = self.schedule_length(self.cfg)
        return length if unit == "iterations" else 0

    def lr_lambda(self, step: int) -> float:
        """Multiplier of the base lr at `step` (0-based epoch or iteration, see `schedule_unit`)."""
        from methods.schedules import linear_decay

        c = self.cfg
        return linear_decay(step, c.n_epochs, c.n_epochs_decay, c.warmup_epochs)

    # ----------------------------------------------------------------- inference
    @torch.no_grad()
    def translate(self, x: torch.Tensor, z: torch.Tensor | None = None, direction: str = "AtoB") -> torch.Tensor:
        """Translate a batch in [-1,1]; `z` for multimodal methods (None draws a random code).

        The default serves one-way methods with a single generator `netG` (CUT, EnCo, F/LSeSim, ...).
        """
        self.check_direction(direction)
        if "netG" not in self.nets:
            raise NotImplementedError(f"{type(self).__name__} has no netG: it must implement translate()")
        return self.nets["netG"](x.to(self.device))

    def check_direction(self, direction: str) -> None:
        """AtoB always; BtoA only for two-way methods (one run trains both generators)."""
        allowed = ("AtoB", "BtoA") if self.two_way else ("AtoB",)
        if direction not in allowed:
            kind = "two-way" if self.two_way else "one-way (A->B)"
            raise UsageError(f"{self.name} is {kind}; direction={direction!r} is not available")

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Random latent codes for multimodal methods (None for deterministic methods)."""
        return None

    def train(self) -> None:
        for net in self.nets.values():
            net.train()

    def eval(self) -> None:
        for net in self.nets.values():
            net.eval()

    # ----------------------------------------------------------------- state
    def extra_state(self) -> dict[str, Any]:
        """Training state beyond nets and optimisers (image pools, counters): tensors and plain types."""
        return {name: getattr(self, name).state_dict() for name in self.POOLS}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state:
            for name in self.POOLS:
                getattr(self, name).load_state_dict(state[name])

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "extra": self.extra_state(),
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, sd in state["nets"].items():
            self.nets[k].load_state_dict(sd)
        for k, sd in state.get("optimizers", {}).items():
            if k in self.optimizers:
                self.optimizers[k].load_state_dict(sd)
        self.load_extra_state(state.get("extra", {}))
        self.epoch = state.get("epoch", self.epoch)

    def describe(self) -> dict[str, Any]:
        """What a run uses beyond its config (e.g. frozen pretrained weights); recorded as MLflow tags."""
        return {}

    def parameter_count(self, names: list[str] | None = None) -> int:
        """Number of parameters of the named nets (all by default), counted like the official code."""
        names = list(self.nets) if names is None else names
        return sum(p.numel() for k in names for p in self.nets[k].parameters())

    def generator_keys(self) -> list[str]:
        """Nets needed to translate (what `bench import` loads and `best.pt` must contain)."""
        return [k for k in self.nets if k.startswith("netG")]

    def scoring_keys(self, direction: str = "AtoB") -> list[str]:
        """Nets a score of `direction` depends on: `bench import` refuses to score until all were imported.

        Two-way methods named like the official code (netG_A: A->B, netG_B: B->A) need one generator per
        direction; NICE-GAN, MUNIT and BicycleGAN override this.
        """
        keys = self.generator_keys()
        if self.two_way and set(keys) == {"netG_A", "netG_B"}:
            return ["netG_A" if direction == "AtoB" else "netG_B"]
        return keys

    def official_entries(self, path, state: Mapping[str, Any]) -> dict[str, Any] | None:
        """Split an official checkpoint file that holds several nets into {net: state dict}.

        None: the file is one net's plain state dict (the CycleGAN/CUT `<epoch>_net_<name>.pth` files).
        """
        return None


def set_requires_grad(nets, flag: bool) -> None:
    """Freeze or unfreeze the parameters of one net or a list of nets."""
    if isinstance(nets, nn.Module):
        nets = [nets]
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def discriminator_loss(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                       gan_mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """0.5 * (L(D(fake), 0) + L(D(real), 1)), the CycleGAN/pix2pix/CUT D objective, and its two terms.

    `fake` is detached here (D's objective never reaches the generator; an image pool of size 0 hands back
    the generator's own output). Returns (loss_D, loss_D_real, loss_D_fake).
    """
    loss_fake = gan_loss(netD(fake.detach()), False, gan_mode).mean()
    loss_real = gan_loss(netD(real), True, gan_mode).mean()
    return 0.5 * (loss_fake + loss_real), loss_real, loss_fake


def discriminator_backward(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor, gan_mode: str) -> torch.Tensor:
    """Backpropagate `discriminator_loss` (for two Ds that share one optimiser step); returns loss_D."""
    loss = discriminator_loss(netD, real, fake, gan_mode)[0]
    backward(loss)
    return loss


def discriminator_step(netD: nn.Module, optimizer: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor,
                       gan_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One update of a D with its own optimiser on `discriminator_loss`. Leaves D trainable; returns
    (loss_D_real, loss_D_fake)."""
    set_requires_grad(netD, True)
    optimizer.zero_grad(set_to_none=True)
    loss, loss_real, loss_fake = discriminator_loss(netD, real, fake, gan_mode)
    backward(loss)
    optimizer_step(optimizer)
    return loss_real, loss_fake


def adam(params, cfg: MethodConfig, lr: float | None = None, **kw) -> torch.optim.Adam:
    """Adam with the config's betas (0.5, 0.999 in most official repos) and weight decay (0 unless declared)."""
    kw.setdefault("weight_decay", getattr(cfg, "weight_decay", 0.0))
    return torch.optim.Adam(params, lr=cfg.lr if lr is None else lr, betas=(cfg.beta1, cfg.beta2), **kw)


def parameters_of(*nets: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters of several nets as one list, for an optimiser that steps them together."""
    return [p for net in nets for p in net.parameters()]


Callback = Callable[..., Any]
