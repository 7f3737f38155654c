"""What the authors ran, per method and per dataset, with the official source of every value.

Each method declares a `Recipe` (its `RECIPE` class attribute): the code defaults a run relies on (epochs,
load/crop, resize filter and aspect rule, sampling, loss switches: the values its `Config` dataclass
already holds, each with the file it comes from), settings that apply on every dataset (a README command
that differs from the code defaults), and per-dataset settings from the official scripts and configs
(BicycleGAN's `scripts/train*.sh`, MUNIT's `configs/*.yaml`, ...), each with its source.

Presets read it (`Method.preset_overrides`): `paper` = code defaults + every-dataset settings + the chosen
dataset's settings; `code-defaults` = the official code's own defaults, whatever the dataset; `smoke` and a
method's other presets start from `paper`. `bench methods --recipe METHOD` prints it.

A source is ``owner/repo@commit:path`` (plus the option or line it reads), or the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: Datasets bench knows an official recipe for (the registry's real datasets; `toy` has none).
DATASETS = ("horse2zebra", "afhq", "cityscapes", "maps", "facades")


@dataclass(frozen=True)
class Setting:
    """One value of a recipe and where it comes from."""

    value: Any
    source: str


@dataclass(frozen=True)
class DatasetRecipe:
    """What the official code runs for one dataset: its command (or config file) and the settings it changes."""

    command: str
    settings: Mapping[str, Setting] = field(default_factory=dict)
    #: Anything a reader must know (e.g. a config value bench does not adopt, and why).
    note: str = ""


@dataclass(frozen=True)
class Recipe:
    """The official recipe of one method.

    Args:
        code: official repository@commit.
        defaults: code defaults a `paper` run relies on, keyed by config field (they must equal the Config's).
        common: settings the `paper` preset applies on every dataset (e.g. a README command).
        datasets: per-dataset recipes; a dataset without one runs `default_command`.
        default_command: the command for a dataset without its own script or config.
        test: the official test-time preprocessing, in words, with its source.
    """

    code: str
    defaults: Mapping[str, Setting]
    common: Mapping[str, Setting] = field(default_factory=dict)
    datasets: Mapping[str, DatasetRecipe] = field(default_factory=dict)
    default_command: str = ""
    test: Setting | None = None

    def for_dataset(self, dataset: str | None) -> DatasetRecipe | None:
        return self.datasets.get(dataset) if dataset else None

    def paper_overrides(self, dataset: str | None) -> dict[str, Any]:
        """Config overrides of the `paper` preset on `dataset` (None: the every-dataset settings only)."""
        out = {k: s.value for k, s in self.common.items()}
        own = self.for_dataset(dataset)
        if own is not None:
            out.update({k: s.value for k, s in own.settings.items()})
        return out

    def settings(self, dataset: str | None) -> dict[str, tuple[Setting, str]]:
        """Every recipe value of `paper` on `dataset`: field -> (setting, 'code' | 'all' | 'dataset')."""
        out = {k: (s, "code") for k, s in self.defaults.items()}
        out.update({k: (s, "all") for k, s in self.common.items()})
        own = self.for_dataset(dataset)
        if own is not None:
            out.update({k: (s, "dataset") for k, s in own.settings.items()})
        return out

    def command(self, dataset: str | None) -> str:
        own = self.for_dataset(dataset)
        return own.command if own is not None else self.default_command

    def fields(self) -> set[str]:
        """Every config field the recipe names."""
        names = set(self.defaults) | set(self.common)
        for own in self.datasets.values():
            names |= set(own.settings)
        return names


def src(repo: str, path: str, what: str = "") -> str:
    """A source string: ``repo:path (what)``."""
    return f"{repo}:{path}" + (f" ({what})" if what else "")


# ------------------------------------------------------------------------------------------------ repositories
CGR = "junyanz/pytorch-CycleGAN-and-pix2pix@00d5574"
BGR = "junyanz/BicycleGAN@40b9d52"
CUTR = "taesungp/contrastive-unpaired-translation@b3ac297"
DCLR = "JunlinHan/DCLGAN@abb805c"
QSR = "sapphire497/query-selected-attention@c2c5e40"
ENR = "XiudingCai/EnCo-pytorch@0d404a7"
FLSR = "lyndonzheng/F-LSeSim@6ca7883"
NICER = "alpc91/NICE-GAN-pytorch@1b114f1"
MUR = "NVlabs/MUNIT@a82e222"


# ------------------------------------------------------------------------------------------------ shared blocks
def resize_and_crop(repo: str, *, finetune: bool | None = None, epochs: tuple[int, int] | None = None,
                    sampling: bool = True) -> dict[str, Setting]:
    """The CycleGAN-derived loader (`--preprocess resize_and_crop`) of `repo`, and its epoch options.

    Every CycleGAN/CUT fork ships the same `data/base_dataset.py` and `data/unaligned_dataset.py`; the
    sources name the fork's own copy. `finetune`: the CUT family's no-jitter decay phase (None: not a field).
    """
    out = {
        "load_size": Setting(286, src(repo, "options/base_options.py", "--load_size")),
        "crop_size": Setting(256, src(repo, "options/base_options.py", "--crop_size")),
        "resize_filter": Setting("bicubic", src(repo, "data/base_dataset.py", "get_transform method=Image.BICUBIC")),
        "resize_aspect": Setting("square", src(repo, "data/base_dataset.py",
                                               "preprocess resize_and_crop: Resize([load_size, load_size])")),
        "flip": Setting(True, src(repo, "options/base_options.py", "--no_flip off")),
        "flip_first": Setting(False, src(repo, "data/base_dataset.py", "get_transform: resize, crop, then flip")),
    }
    if sampling:
        out["sampling"] = Setting("random_b", src(repo, "data/unaligned_dataset.py",
                                                  "A[index % |A|], B = random.randint (with replacement)"))
    if finetune is not None:
        out["finetune_no_jitter"] = Setting(finetune, src(
            repo, "data/unaligned_dataset.py", "load_size = crop_size after n_epochs" if finetune
            else "no finetune phase: load->crop jitter all along"))
    if epochs is not None:
        out["n_epochs"] = Setting(epochs[0], src(repo, "options/train_options.py", "--n_epochs"))
        out["n_epochs_decay"] = Setting(epochs[1], src(repo, "options/train_options.py", "--n_epochs_decay"))
    return out


def resize_test(repo: str) -> Setting:
    """The CycleGAN-derived test path: load_size = crop_size, so a plain bicubic resize to 256x256."""
    return Setting("resize to crop_size x crop_size (256), bicubic; no crop, no flip",
                   src(repo, "options/test_options.py", "load_size defaults to crop_size"))
