"""EnCo: content constraint between encoder and decoder features of one generator pass, with DAG sampling.

Cai, Zhu, Miao, Fu, Yao. "Rethinking the Paradigm of Content Constraints in GAN-based Unpaired
Image-to-Image Translation", AAAI 2024. Official code: XiudingCai/EnCo-pytorch@0d404a7 (BSD-2).
Facts in reference/methods.md §2.7: anti-aliased ResNet-9 G whose layers (3,28), (7,24), (13,18) are
paired (encoder k, decoder q); decoder patches go through a projection MLP with BatchNorm and a predictor,
encoder patches (detached: stop-gradient) through the same MLP; loss 2 − 2·cos; identity L1 with λ_IDT=10
whose weight is halved together with the content loss while the lr is constant and dropped in the decay
phase; separate Adam lrs for G, F, D (5e-5, 5e-5, 2e-4); lsgan D; no image pool.
DAG sampling (discriminator-attention-guided): per image draw `num_patches × oversample_ratio` random
candidates, keep the `num_patches × (1 − random_ratio)` with the lowest D score (most fake-looking; D's
30×30 map resized bilinearly to the layer) and add `num_patches × random_ratio` uniformly random positions.

`paper` preset (RECIPE; `bench methods --recipe enco`) = the training command of README.md, the one that
produced the paper's numbers, on every dataset (the README gives it for Cityscapes and no other):
`python train.py --model enco --nce_layers 3,7,13,18,24,28 --batch_size 1 --n_epochs 100 --n_epochs_decay 100
--lambda_IDT 10 --lambda_NCE 2 --netF mlp_sample_with_DAG --lr_G 5e-5 --lr_F 5e-5 --lr_D 2e-4
--warmup_epochs 20 --flip_equivariance True`, i.e. λ_NCE 2, 100+100 epochs, 20 warm-up epochs, random flips.
`code-defaults` = the code's own defaults (λ_NCE 1, 200+200 epochs, no warm-up, no flips; the code's default
`--netF cam_mlp_sample` is unimplemented, so the DAG head `mlp_sample_with_DAG` is what runs either way).
The README command has no `--direction`: in its own Cityscapes layout (A = photo) that trains photo->label;
bench keeps the dataset's direction (label2photo, the direction the paper reports).
Not affected by torch 2.14.1's instance-norm gradient bug (README; benchmarks/instance_norm_gradients.py: the
official arithmetic and bench's give equal generator gradients).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError
from methods.base import Method, adam, backward, discriminator_step, optimizer_step, set_requires_grad
from methods.config import CUTFamilyConfig, MethodConfig
from methods.losses.byol import multilayer_byol_loss
from methods.losses.gan import gan_loss
from methods.nets.heads import flatten_feature, l2_normalize
from methods.nets.image_pool import ImagePool
from methods.nets.init import init_weights
from methods.nets.patchgan import define_D
from methods.nets.resnet import ResnetGenerator
from methods.recipes import ENR, Recipe, Setting, resize_and_crop, resize_test, src

_README = src(ENR, "README.md", "training command")
_MODEL = "models/enco_model.py"
RECIPE = Recipe(
    code=ENR,
    defaults={**resize_and_crop(ENR, finetune=True, epochs=(200, 200)),
              "warmup_epochs": Setting(0, src(ENR, "options/train_options.py", "--warmup_epochs -1 (none)")),
              "lambda_NCE": Setting(1.0, src(ENR, _MODEL, "--lambda_NCE")),
              "lambda_IDT": Setting(10.0, src(ENR, _MODEL, "--lambda_IDT")),
              "flip_equivariance": Setting(False, src(ENR, _MODEL, "--flip_equivariance")),
              "lr_G": Setting(5e-5, src(ENR, _MODEL, "--lr_G")), "lr_F": Setting(5e-5, src(ENR, _MODEL, "--lr_F")),
              "lr_D": Setting(2e-4, src(ENR, _MODEL, "--lr_D"))},
    common={"lambda_NCE": Setting(2.0, _README + ": --lambda_NCE 2"),
            "lambda_IDT": Setting(10.0, _README + ": --lambda_IDT 10"),
            "n_epochs": Setting(100, _README + ": --n_epochs 100"),
            "n_epochs_decay": Setting(100, _README + ": --n_epochs_decay 100"),
            "warmup_epochs": Setting(20, _README + ": --warmup_epochs 20"),
            "flip_equivariance": Setting(True, _README + ": --flip_equivariance True")},
    default_command=(f"{_README}: python train.py --model enco --nce_layers 3,7,13,18,24,28 --batch_size 1 "
                     "--n_epochs 100 --n_epochs_decay 100 --lambda_IDT 10 --lambda_NCE 2 --netF mlp_sample_with_DAG "
                     "--lr_G 5e-5 --lr_F 5e-5 --lr_D 2e-4 --warmup_epochs 20 --flip_equivariance True"),
    test=resize_test(ENR),
)


@dataclass(frozen=True)
class EnCoConfig(CUTFamilyConfig):
    """EnCo-pytorch@0d404a7 code defaults (models/enco_model.py, options/base_options.py)."""

    lambda_GAN: float = 1.0
    #: Weight of the encoder-decoder (BYOL) content loss; the official option keeps CUT's name.
    lambda_NCE: float = 1.0
    lambda_IDT: float = 10.0
    #: Identity L1 on G(real_B) (the official flag keeps CUT's name nce_idt).
    nce_idt: bool = True
    #: Last epoch (1-based) with the identity term; -1 = n_epochs.
    stop_idt_epochs: int = -1
    #: Linearly decay λ_IDT over all epochs.
    decay_idt: bool = False
    #: Encoder indices first, then decoder indices; pairs are (first, last), (second, second-last), ...
    nce_layers: tuple[int, ...] = (3, 7, 13, 18, 24, 28)
    num_patches: int = 256
    netF_nc: int = 256
    #: Norm of the projection MLP and predictor ('BN' = BatchNorm1d, the code default).
    prj_norm: str = "BN"
    no_predictor: bool = False
    stop_gradient: bool = True
    #: DAG sampling; False = uniformly random positions (shared by the batch, like CUT).
    dag: bool = True
    oversample_ratio: int = 4
    random_ratio: float = 0.5
    lr_G: float = 5e-5
    lr_F: float = 5e-5
    lr_D: float = 2e-4
    pool_size: int = 0
    #: Independent random horizontal flips of real_A and real_B in the step (plain augmentation).
    flip_equivariance: bool = False

    CHOICES: ClassVar[dict] = {**CUTFamilyConfig.CHOICES, "prj_norm": ("BN", "LN", "None")}

    def validate(self) -> None:
        super().validate()
        if self.lr != MethodConfig.lr:
            raise ConfigError(f"EnCo trains with lr_G/lr_F/lr_D, not lr (got lr={self.lr}); set those instead")
        for name in ("lr_G", "lr_F", "lr_D"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.nce_layers or len(self.nce_layers) % 2:
            raise ConfigError(f"nce_layers {list(self.nce_layers)}: need an even number of indices "
                              "(encoder layers, then the decoder layers paired in reverse order)")
        self.check_generator_layers("nce_layers", self.nce_layers)
        self.check_at_least(1, "num_patches", "oversample_ratio")
        self.check_at_least(0, "pool_size")
        if not 0.0 <= self.random_ratio <= 1.0:
            raise ConfigError(f"random_ratio must be in [0, 1], got {self.random_ratio}")

    @property
    def layer_pairs(self) -> list[tuple[int, int]]:
        """(encoder k-layer, decoder q-layer) pairs: (3,28), (7,24), (13,18) by default."""
        half = len(self.nce_layers) // 2
        return list(zip(self.nce_layers[:half], self.nce_layers[half:][::-1]))


# ------------------------------------------------------------------------------------------- sampling
def dag_sample_ids(cam: torch.Tensor, num_patches: int, oversample_ratio: int = 4,
                   random_ratio: float = 0.5) -> torch.Tensor:
    """(B, S) positions per image: the lowest-scored of random candidates, plus uniformly random ones.

    `cam` is D's map resized to the layer, (B, 1, H, W) or (B, H, W); low = fake-looking for lsgan.
    Random positions may repeat hard ones, as in the official code.
    Follows EnCo-pytorch@0d404a7:models/networks.py PatchSampleWithDAGF.forward.
    """
    b = cam.shape[0]
    scores = cam.reshape(b, -1)
    n_pos = scores.shape[1]
    num = min(num_patches, n_pos)
    n_random = int(num * random_ratio)
    n_hard = num - n_random
    ids = []
    for i in range(b):
        cand = torch.randperm(n_pos, device="cpu").to(scores.device)[: num * oversample_ratio]
        order = torch.sort(scores[i, cand], descending=False).indices
        chosen = [cand[order[:n_hard]]]
        if n_random > 0:
            chosen.append(torch.randperm(n_pos, device="cpu").to(scores.device)[-n_random:])
        ids.append(torch.cat(chosen))
    return torch.stack(ids)


def random_sample_ids(batch: int, n_positions: int, num_patches: int, device) -> torch.Tensor:
    """(B, S) uniformly random positions, one permutation shared by the batch (the `dag=false` ablation)."""
    ids = torch.randperm(n_positions, device="cpu")[: min(num_patches, n_positions)].to(device)
    return ids.expand(batch, -1)


def gather_patches(feat: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows of (B, C, H, W) at per-image positions `ids` (B, S) -> (B*S, C), image-major."""
    flat = flatten_feature(feat)
    rows = torch.arange(flat.shape[0], device=feat.device)[:, None]
    return flat[rows, ids].flatten(0, 1)


# ------------------------------------------------------------------------------------------- head
class EnCoHead(nn.Module):
    """EnCo's netF: per layer a projection MLP `mlp_<i>` (+ BN) and a predictor `prj_<i>`.

    mlp: Linear(C, nc, no bias) → norm → ReLU → Linear(nc, nc, no bias) → norm (BN without affine);
    prj: Linear(nc, nc/2, no bias) → norm → ReLU → Linear(nc/2, nc). Outputs are L2-normalised.
    Created eagerly (the official creates them at the first forward; keys and shapes are the same).
    Follows EnCo-pytorch@0d404a7:models/networks.py PatchSampleWithDAGF.create_mlp/create_prj.
    """

    def __init__(self, in_channels: Sequence[int], nc: int = 256, norm: str = "BN",
                 init_type: str = "xavier", init_gain: float = 0.02) -> None:
        super().__init__()

        def make_norm(n: int, last: bool = False) -> nn.Module:
            if norm == "BN":
                return nn.BatchNorm1d(n, affine=not last)
            return nn.LayerNorm(n) if norm == "LN" else nn.Identity()

        for i, c in enumerate(in_channels):
            self.add_module(f"mlp_{i}", nn.Sequential(
                nn.Linear(c, nc, bias=False), make_norm(nc), nn.ReLU(inplace=True),
                nn.Linear(nc, nc, bias=False), make_norm(nc, last=True)))
        for i, _ in enumerate(in_channels):
            self.add_module(f"prj_{i}", nn.Sequential(
                nn.Linear(nc, nc // 2, bias=False), make_norm(nc // 2), nn.ReLU(inplace=True),
                nn.Linear(nc // 2, nc)))
        self.n_layers = len(in_channels)
        # BatchNorm1d keeps PyTorch's init (weight 1, bias 0): the official init only touches BatchNorm2d.
        init_weights(self, init_type, init_gain)

    def forward(self, samples: Sequence[torch.Tensor], predict: bool = False) -> list[torch.Tensor]:
        """Project (B*S, C) patch samples of each layer; `predict` adds the predictor (query side)."""
        out = []
        for i, x in enumerate(samples):
            x = self.get_submodule(f"mlp_{i}")(x)
            if predict:
                x = self.get_submodule(f"prj_{i}")(x)
            out.append(l2_normalize(x))
        return out


def _layer_shapes(cfg: EnCoConfig, layers: Sequence[int]) -> list[tuple[int, ...]]:
    """(C, H, W) of G's features at `layers` for a 64² input, computed on the meta device (no memory)."""
    with torch.device("meta"):
        G = ResnetGenerator(3, 3, cfg.ngf, cfg.n_blocks, cfg.norm, False, antialias=cfg.antialias,
                            antialias_up=cfg.antialias_up)
        _, feats = G(torch.zeros(1, 3, 64, 64), sorted(set(layers)))
    by_index = dict(zip(sorted(set(layers)), (tuple(f.shape[1:]) for f in feats)))
    return [by_index[i] for i in layers]


class EnCo(Method):
    Config = EnCoConfig
    POOLS = ("fake_pool",)
    citation = ("Cai et al., Rethinking the Paradigm of Content Constraints in GAN-based Unpaired "
                "Image-to-Image Translation, AAAI 2024")
    official_code = "XiudingCai/EnCo-pytorch@0d404a7"
    licence = "BSD-2-Clause"
    RECIPE = RECIPE

    def __init__(self, cfg: EnCoConfig, device="cpu") -> None:
        super().__init__(cfg, device)
        pairs = cfg.layer_pairs
        k_shapes = _layer_shapes(cfg, [k for k, _ in pairs])
        q_shapes = _layer_shapes(cfg, [q for _, q in pairs])
        for (k, q), ks, qs in zip(pairs, k_shapes, q_shapes):
            if ks != qs:
                raise ConfigError(f"nce_layers pair ({k}, {q}): feature shapes {ks} and {qs} differ; "
                                  "pair encoder and decoder layers of the same width and resolution")
        G = ResnetGenerator(3, 3, cfg.ngf, cfg.n_blocks, cfg.norm, False, antialias=cfg.antialias,
                            antialias_up=cfg.antialias_up)
        D = define_D(cfg.netD, 3, cfg.ndf, cfg.n_layers_D, cfg.norm, antialias=cfg.antialias)
        # Head i serves pair i; the official creates it from the decoder (query) features in pair order.
        netF = EnCoHead([s[0] for s in q_shapes], cfg.netF_nc, cfg.prj_norm, cfg.init_type, cfg.init_gain)
        self.nets = {"netG": init_weights(G, cfg.init_type, cfg.init_gain).to(self.device),
                     "netD": init_weights(D, cfg.init_type, cfg.init_gain).to(self.device),
                     "netF": netF.to(self.device)}
        self.fake_pool = ImagePool(cfg.pool_size)

    # ----------------------------------------------------------------- schedule
    def make_optimizers(self):
        c, n = self.cfg, self.nets
        return {"G": adam(n["netG"].parameters(), c, lr=c.lr_G), "F": adam(n["netF"].parameters(), c, lr=c.lr_F),
                "D": adam(n["netD"].parameters(), c, lr=c.lr_D)}

    def idt_active(self) -> bool:
        """Identity term on in this epoch (epochs 1..stop_idt_epochs; stop_idt_epochs<0 means n_epochs)."""
        c = self.cfg
        stop = c.n_epochs if c.stop_idt_epochs < 0 else c.stop_idt_epochs
        return c.nce_idt and self.epoch <= stop

    def lambda_idt(self) -> float:
        """λ_IDT, linearly decayed over all epochs with decay_idt."""
        c = self.cfg
        if not c.decay_idt:
            return c.lambda_IDT
        return c.lambda_IDT * (c.total_epochs - self.epoch) / c.total_epochs

    # ----------------------------------------------------------------- losses
    def sample_ids(self, feats_q: Sequence[torch.Tensor], cam: torch.Tensor | None) -> list[torch.Tensor]:
        """(B, S) positions per q-layer: DAG on D's map resized to the layer, or uniformly random."""
        c, ids = self.cfg, []
        for feat in feats_q:
            b, _, h, w = feat.shape
            if c.dag:
                cam_l = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)
                ids.append(dag_sample_ids(cam_l, c.num_patches, c.oversample_ratio, c.random_ratio))
            else:
                ids.append(random_sample_ids(b, h * w, c.num_patches, feat.device))
        return ids

    def content_loss(self, feats: Sequence[torch.Tensor], cam: torch.Tensor | None) -> torch.Tensor:
        """Unweighted EnCo loss between the encoder (k) and decoder (q) features of one G pass.

        `feats` are G's features at cfg.nce_layers in index order; `cam` is D's map of the translation.
        """
        c = self.cfg
        half = len(feats) // 2
        feats_k, feats_q = list(feats[:half]), list(feats[half:])[::-1]
        if c.stop_gradient:
            feats_k = [f.detach() for f in feats_k]
        ids = self.sample_ids(feats_q, cam)
        netF = self.nets["netF"]
        q = netF([gather_patches(f, i) for f, i in zip(feats_q, ids)], predict=not c.no_predictor)
        k = netF([gather_patches(f, i) for f, i in zip(feats_k, ids)], predict=False)
        return multilayer_byol_loss(q, k, stop_gradient=c.stop_gradient)

    def train_step(self, batch):
        c, n, opt = self.cfg, self.nets, self.optimizers
        real_A, real_B = batch["A"].to(self.device), batch["B"].to(self.device)
        if c.flip_equivariance:
            # EnCo's "flip_equivariance" is independent flips of A and B (enco_model.py set_input).
            if torch.rand(()).item() < 0.5:
                real_A = torch.flip(real_A, [3])
            if torch.rand(()).item() < 0.5:
                real_B = torch.flip(real_B, [3])
        use_idt = self.idt_active()
        nA = real_A.size(0)
        fake, feats = n["netG"](torch.cat((real_A, real_B)) if use_idt else real_A, c.nce_layers)
        fake_B, idt_B = fake[:nA], fake[nA:] if use_idt else None
        feats = [f[:nA] for f in feats]

        # D first (CUT family order)
        loss_D_real, loss_D_fake = discriminator_step(n["netD"], opt["D"], real_B,
                                                      self.fake_pool.query(fake_B.detach()), c.gan_mode)

        # then G and F; DAG reads the updated D's map of the translation
        set_requires_grad(n["netD"], False)
        opt["G"].zero_grad(set_to_none=True)
        opt["F"].zero_grad(set_to_none=True)
        zero = torch.zeros((), device=self.device)
        if c.lambda_GAN > 0:
            pred_fake = n["netD"](fake_B)
            loss_G_GAN = gan_loss(pred_fake, True, c.gan_mode).mean() * c.lambda_GAN
            cam = pred_fake.detach()
        else:
            loss_G_GAN = zero
            with torch.no_grad():
                cam = n["netD"](fake_B) if c.dag else None
        loss_BYOL = self.content_loss(feats, cam) * c.lambda_NCE if c.lambda_NCE > 0 else zero
        if use_idt and c.lambda_NCE > 0:
            loss_BYOL_Y = F.l1_loss(idt_B, real_B) * self.lambda_idt()
            loss_content = 0.5 * (loss_BYOL + loss_BYOL_Y)
        else:
            loss_BYOL_Y = zero
            loss_content = loss_BYOL
        loss_G = loss_G_GAN + loss_content
        backward(loss_G)
        optimizer_step(opt["G"])
        optimizer_step(opt["F"])
        set_requires_grad(n["netD"], True)
        out = {"D_real": loss_D_real, "D_fake": loss_D_fake, "G_GAN": loss_G_GAN, "BYOL": loss_BYOL,
               "BYOL_Y": loss_BYOL_Y, "G": loss_G}
        return {k: v.detach() for k, v in out.items()}

