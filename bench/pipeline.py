"""The rule an official data loader follows, by name: resize filter, aspect rule, flip order, sampling.

A frozen dataclass without torch or PIL, so configs that name a rule stay light to import; bench.data.transforms
applies it (see its docstring for the official loaders behind each rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import DataError

#: Resize filters (PIL's BICUBIC and BILINEAR; torchvision's Resize defaults to bilinear).
FILTER_NAMES = ("bicubic", "bilinear")
#: square = (load, load) like CycleGAN's resize_and_crop; shorter_side = torchvision `Resize(int)` (MUNIT).
ASPECTS = ("square", "shorter_side")
#: How the unpaired B (and A) images are drawn; see bench.data.datasets.TranslationDataset.
SAMPLINGS = ("random_b", "cycle", "zip")


@dataclass(frozen=True)
class Pipeline:
    """The rule an official loader follows; sizes are passed separately."""

    filter: str = "bicubic"
    aspect: str = "square"
    #: Flip before resizing (torchvision Compose order of NICE-GAN and MUNIT) instead of after cropping.
    flip_first: bool = False
    sampling: str = "random_b"
    #: LSeSim --augment: also return colour-jittered copies of the training crops (A_aug, B_aug).
    color_jitter: bool = False

    def __post_init__(self) -> None:
        for name, value, allowed in (("filter", self.filter, FILTER_NAMES), ("aspect", self.aspect, ASPECTS),
                                     ("sampling", self.sampling, SAMPLINGS)):
            if value not in allowed:
                raise DataError(f"pipeline {name}={value!r} is not one of {list(allowed)}")

    def describe(self) -> str:
        """One line for logs and protocol records, e.g. 'bilinear square resize, flip first'."""
        parts = [f"{self.filter} {self.aspect.replace('_', '-')} resize"]
        if self.flip_first:
            parts.append("flip first")
        return ", ".join(parts)


DEFAULT_PIPELINE = Pipeline()
