"""MUNIT: multimodal unsupervised translation with a shared content space and per-domain style codes.

Huang, Liu, Belongie, Kautz. "Multimodal Unsupervised Image-to-Image Translation", ECCV 2018. Official code:
NVlabs/MUNIT@a82e222 (CC BY-NC-SA 4.0, non-commercial). Paper defaults from reference/methods.md §2.10 (the
summer2winter_yosemite256 config): per domain an AdaIN auto-encoder (gen_a, gen_b: dim 64, 2 down-samplings,
4 residual blocks, style_dim 8, MLP 256, reflect padding) and a 3-scale LSGAN discriminator (dis_a, dis_b:
dim 64, 4 layers, no norm, lrelu); losses gan 1, image recon 10, style recon 1, content recon 1, cycle 10
(vgg 0: the domain-invariant perceptual loss is not implemented); Adam lr 1e-4, β (0.5, 0.999), weight
decay 1e-4; lr ×0.5 every 100k iterations, 1M iterations, batch 1; update order D then G.
`vgg_w` > 0 adds MUNIT's domain-invariant perceptual loss (synthia2cityscape): the mean squared difference
of the instance-normalised relu5_3 features of a frozen VGG16 (MUNIT's Vgg16 has no 4th max-pool) between each
cross-domain translation and its source, x_ba vs x_b and x_ab vs x_a.
Init: kaiming (fan_in) on every conv/linear of the generators and N(0, 0.02) on the discriminators (the
official trainer applies kaiming to everything, then re-initialises the discriminators with 'gaussian').

Test time: content of the input from its domain's encoder, style drawn from N(0, I) (or given), decoded by
the other domain's generator; `sample_z(n)` draws the style codes for the LPIPS-diversity protocol.

Schedule in the harness: MUNIT counts iterations (`schedule_unit = "iteration"`). `lr_lambda(it)` is a
pure function of the 0-based global iteration; `max_iterations()` (= `iterations`, 1M) is the run length: the
loop runs as many epochs as the budget needs, whatever the dataset size; `n_epochs`/`n_epochs_decay` are not
used. A smaller budget (preset, `--set`, `train.max_iters`) is recorded as a cut schedule.

Data, as the official loaders (utils.py get_data_loader_folder, train.py, test.py): RandomHorizontalFlip ->
torchvision `Resize(new_size)`, i.e. the *shorter* side to new_size keeping the aspect ratio, bilinear ->
RandomCrop(crop); each domain is one shuffled DataLoader and train.py zips them, so an epoch is min(|A|, |B|)
iterations drawn without replacement (`sampling=zip`); test: `Resize(new_size)` only.

`paper` preset per dataset (RECIPE; `bench methods --recipe munit`). MUNIT's repository has configs for
edges2shoes/edges2handbags, summer2winter_yosemite256 and synthia2cityscape, none for bench's datasets:
- maps, facades (pix2pix's paired sets, like edges2*): `configs/edges2shoes_folder.yaml`, i.e. the
  summer2winter values with `recon_x_cyc_w: 0` (no cycle loss);
- cityscapes: `configs/synthia2cityscape_folder.yaml`: `vgg_w: 1` (the VGG loss); its `new_size`/crop 512 are
  for full-resolution Cityscapes photos and are not adopted (bench's Cityscapes is stored at 256 px);
- horse2zebra, afhq: `configs/summer2winter_yosemite256_folder.yaml` (the repository's natural-image config;
  the code defaults here).
The VGG16 weights: MUNIT converts caffe's VGG16 (`vgg16.t7` -> `vgg16.weight`, inputs BGR in 0-255 minus the
mean); `vgg_weights=PATH` accepts that file (then with MUNIT's preprocessing) or torchvision's
`vgg16-397923af.pth` (ImageNet-normalised inputs; the default, from torchvision's cache: different weights
from MUNIT's, recorded in `describe()`). Nothing is downloaded; without weights, setup refuses unless
`allow_random_vgg=true` (the smoke preset).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from bench.errors import CheckpointError, ConfigError, UsageError
from methods.base import Method, adam, backward, optimizer_step, parameters_of, set_requires_grad
from methods.config import MethodConfig
from methods.losses.gan import multiscale_gan_loss
from methods.nets.init import contiguous_grad, init_weights
from methods.nets.munit import ACTIVATIONS, PADS, AdaINGen, MsImageDis, min_image_size
from methods.nets.vgg import VGG16Features, caffe_preprocess, imagenet_normalize, resolve_vgg16
from methods.recipes import MUR, DatasetRecipe, Recipe, Setting, src

_S2W = "configs/summer2winter_yosemite256_folder.yaml"
_LOADER = "utils.py"
RECIPE = Recipe(
    code=MUR,
    defaults={"iterations": Setting(1_000_000, src(MUR, _S2W, "max_iter")),
              "step_size": Setting(100_000, src(MUR, _S2W, "step_size (lr_policy step)")),
              "gamma": Setting(0.5, src(MUR, _S2W, "gamma")),
              "lr": Setting(1e-4, src(MUR, _S2W, "lr")),
              "load_size": Setting(256, src(MUR, _S2W, "new_size")),
              "crop_size": Setting(256, src(MUR, _S2W, "crop_image_height/width")),
              "resize_filter": Setting("bilinear", src(MUR, _LOADER, "get_data_loader_folder: transforms.Resize "
                                                                     "(torchvision default BILINEAR)")),
              "resize_aspect": Setting("shorter_side", src(MUR, _LOADER, "transforms.Resize(new_size): an int "
                                                                         "resizes the shorter side")),
              "flip": Setting(True, src(MUR, _LOADER, "RandomHorizontalFlip when train")),
              "flip_first": Setting(True, src(MUR, _LOADER, "Compose: RandomHorizontalFlip, Resize, RandomCrop")),
              "sampling": Setting("zip", src(MUR, "train.py", "zip(train_loader_a, train_loader_b), shuffle=True, "
                                                              "drop_last=True")),
              "recon_x_cyc_w": Setting(10.0, src(MUR, _S2W, "recon_x_cyc_w")),
              "vgg_w": Setting(0.0, src(MUR, _S2W, "vgg_w")),
              "batch_size": Setting(1, src(MUR, _S2W, "batch_size"))},
    datasets={
        "cityscapes": DatasetRecipe(
            src(MUR, "configs/synthia2cityscape_folder.yaml"),
            {"vgg_w": Setting(1.0, src(MUR, "configs/synthia2cityscape_folder.yaml", "vgg_w: 1"))},
            note="its new_size/crop 512 are for full-resolution Cityscapes photos; bench's Cityscapes is stored at "
                 "256 px, so load/crop stay 256"),
        **{name: DatasetRecipe(
            src(MUR, "configs/edges2shoes_folder.yaml", "pix2pix's paired sets, trained unpaired"),
            {"recon_x_cyc_w": Setting(0.0, src(MUR, "configs/edges2shoes_folder.yaml", "recon_x_cyc_w: 0"))},
            note="MUNIT has no config for this dataset; edges2shoes/edges2handbags (same values) are its configs "
                 "for pix2pix's paired datasets") for name in ("maps", "facades")},
        **{name: DatasetRecipe(
            src(MUR, _S2W), note="MUNIT has no config for this dataset; summer2winter is its natural-image config")
           for name in ("horse2zebra", "afhq")},
    },
    default_command=src(MUR, _S2W, "python train.py --config configs/summer2winter_yosemite256_folder.yaml"),
    test=Setting("resize the shorter side to new_size (256), bilinear; no crop", src(MUR, "test.py",
                                                                                   "transforms.Resize(new_size)")),
)


@dataclass(frozen=True)
class MUNITConfig(MethodConfig):
    # data: official flip -> Resize(new_size 256: the shorter side) bilinear -> random crop 256
    load_size: int = 256
    crop_size: int = 256
    resize_filter: str = "bilinear"
    resize_aspect: str = "shorter_side"
    flip_first: bool = True
    sampling: str = "zip"
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
    #: Domain-invariant perceptual loss (synthia2cityscape: 1); needs VGG16 weights.
    vgg_w: float = 0.0
    #: VGG16 weights for vgg_w: MUNIT's vgg16.weight or torchvision's vgg16-397923af.pth (empty: torchvision's cache).
    vgg_weights: str = ""
    #: Train with a randomly initialised VGG16 when no weights are found (tests, smoke runs).
    allow_random_vgg: bool = False
    # schedule: StepLR(step_size, gamma) stepped once per iteration, before the update
    iterations: int = 1_000_000
    step_size: int = 100_000
    gamma: float = 0.5
    #: Not used: the run length is `iterations` (see the module docstring).
    n_epochs: int = 1
    n_epochs_decay: int = 0

    CHOICES: ClassVar[dict] = {**MethodConfig.CHOICES,
                               "init_type_D": ("normal", "xavier", "kaiming", "orthogonal", "none"),
                               "activ": ACTIVATIONS, "activ_D": ACTIVATIONS, "pad_type": PADS, "pad_type_D": PADS,
                               "norm_D": ("none", "in", "ln", "bn"),
                               # the official 'nsgan' is BCE on sigmoid outputs = 'vanilla' here
                               "gan_mode": ("lsgan", "vanilla")}

    def stride_stages(self) -> int:
        return self.n_downsample  # the content encoder's depth is a setting (the crop check lives in the base)

    def validate(self) -> None:
        super().validate()
        for name in ("style_dim", "mlp_dim", "n_layer", "num_scales", "iterations", "step_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_res < 0 or self.n_downsample < 0:
            raise ConfigError("n_res and n_downsample must be >= 0")
        smallest = min_image_size(self.n_layer, self.num_scales)
        if self.crop_size < smallest:
            raise ConfigError(f"crop_size {self.crop_size} is too small for a {self.num_scales}-scale, "
                              f"{self.n_layer}-layer discriminator (needs >= {smallest} px); raise crop_size "
                              f"or lower num_scales/n_layer")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.vgg_w < 0:
            raise ConfigError(f"vgg_w must be >= 0, got {self.vgg_w}")


def munit_vgg_features(vgg: VGG16Features, x: torch.Tensor) -> torch.Tensor:
    """relu5_3 of MUNIT's Vgg16: the VGG16 trunk without its 4th max-pool (networks.py Vgg16.forward)."""
    for name, block in vgg.named_children():
        for key, module in block.named_children():
            if key != "23":  # torchvision's pool4, which MUNIT's Vgg16 does not have
                x = module(x)
    return x


def vgg_loss(vgg: VGG16Features, img: torch.Tensor, target: torch.Tensor, preprocess) -> torch.Tensor:
    """MUNIT's compute_vgg_loss: mean((IN(vgg(img)) - IN(vgg(target)))²), IN without affine (eps 1e-5).

    Follows NVlabs/MUNIT@a82e222:trainer.py MUNIT_Trainer.compute_vgg_loss.
    """
    f_img = contiguous_grad(F.instance_norm(munit_vgg_features(vgg, preprocess(img)), eps=1e-5))
    f_tgt = F.instance_norm(munit_vgg_features(vgg, preprocess(target)), eps=1e-5)
    return torch.mean((f_img - f_tgt) ** 2)


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
    # smoke scales the 1M budget to 64 iterations (lr halved once halfway) whatever the dataset size, and may
    # fall back to a random VGG16 where the recipe has the VGG loss (cityscapes).
    PRESETS = {"smoke": {"load_size": 64, "crop_size": 64, "ngf": 8, "ndf": 8, "mlp_dim": 16, "n_res": 2,
                         "iterations": 64, "step_size": 32, "allow_random_vgg": True}}
    RECIPE = RECIPE

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
        # Frozen and outside `nets` (not checkpointed), like FSeSim's netPre; loaded in setup() when vgg_w > 0.
        self.vgg = VGG16Features().to(self.device) if cfg.vgg_w > 0 else None
        self.vgg_weights: str | None = None
        self._checkpoint_vgg: str | None = None

    # ----------------------------------------------------------------- setup
    def setup(self, batch):
        """Load the VGG16 weights when the VGG loss is on (or refuse), then create the optimisers."""
        if self.vgg is not None and self.vgg_weights is None:
            self.vgg_weights = resolve_vgg16(self.vgg, self.cfg.vgg_weights, self.cfg.allow_random_vgg,
                                             self.name or "munit", munit_format=True)
        self._check_checkpoint_vgg()
        self.optimizers = self.make_optimizers()

    def _check_checkpoint_vgg(self) -> None:
        if self._checkpoint_vgg and self.vgg_weights and self._checkpoint_vgg != self.vgg_weights:
            raise CheckpointError(f"the checkpoint was trained with VGG16 weights {self._checkpoint_vgg!r} but this "
                                  f"run has {self.vgg_weights!r}; resume with the same weights")

    def _vgg_preprocess(self):
        """MUNIT's caffe preprocessing for its own weights; ImageNet normalisation for torchvision's (or random)."""
        return caffe_preprocess if (self.vgg_weights or "").startswith("munit:") else imagenet_normalize

    def describe(self):
        return {"vgg_weights": self.vgg_weights} if self.vgg is not None else {}

    def extra_state(self):
        return {"vgg_weights": self.vgg_weights} if self.vgg is not None else {}

    def load_extra_state(self, state):
        if state and "vgg_weights" in state:
            self._checkpoint_vgg = state["vgg_weights"]
            self._check_checkpoint_vgg()

    # ----------------------------------------------------------------- schedule
    def lr_lambda(self, step: int) -> float:
        """Multiplier at 0-based iteration `step`: gamma ** ((step + 1) // step_size).

        The official loop calls `scheduler.step()` at the top of every iteration, before the update, so the
        first halving already applies to iteration step_size - 1 (0-based).
        Follows MUNIT@a82e222:train.py (update_learning_rate first) and utils.py get_scheduler ('step').
        """
        return self.cfg.gamma ** ((step + 1) // self.cfg.step_size)

    @classmethod
    def schedule_length(cls, cfg) -> tuple[int, str]:
        """The official iteration budget (`iterations`); max_iterations() hands it to the loop."""
        return cfg.iterations, "iterations"

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
            if c.vgg_w > 0:
                if self.vgg_weights is None:
                    raise UsageError(f"{self.name or 'munit'}: call setup(batch) before train_step (it loads VGG16)")
                pre = self._vgg_preprocess()
                L["gen_vgg_a"] = vgg_loss(self.vgg, x_ba, x_b, pre)
                L["gen_vgg_b"] = vgg_loss(self.vgg, x_ab, x_a, pre)
            L["gen_total"] = (c.gan_w * (L["gen_adv_a"] + L["gen_adv_b"])
                              + c.recon_x_w * (L["gen_recon_x_a"] + L["gen_recon_x_b"])
                              + c.recon_s_w * (L["gen_recon_s_a"] + L["gen_recon_s_b"])
                              + c.recon_c_w * (L["gen_recon_c_a"] + L["gen_recon_c_b"])
                              + c.recon_x_cyc_w * (L["gen_cycrecon_x_a"] + L["gen_cycrecon_x_b"]))
            if c.vgg_w > 0:
                L["gen_total"] = L["gen_total"] + c.vgg_w * (L["gen_vgg_a"] + L["gen_vgg_b"])
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

    def official_entries(self, path, state):
        """The official `gen_<iter>.pt` ({'a': gen_a, 'b': gen_b}) and `dis_<iter>.pt` ({'a': dis_a, 'b': dis_b}),
        told apart by the file name. Follows MUNIT@a82e222:trainer.py MUNIT_Trainer.save/resume."""
        if not (isinstance(state.get("a"), dict) and isinstance(state.get("b"), dict)):
            return None
        kind = "dis" if Path(path).name.startswith("dis") else "gen"
        return {f"{kind}_a": state["a"], f"{kind}_b": state["b"]}
