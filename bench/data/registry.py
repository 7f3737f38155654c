"""Dataset specs: where each dataset comes from, how it is laid out, its splits, counts and directions.

Facts from reference/methods.md §4 (URLs, layouts, counts, direction conventions). One `DatasetSpec` per
dataset in `DATASETS` at the bottom; `get_spec(name)` looks one up.

Layouts (what `bench/data/layout.py` reads):
- ``unaligned``: ``<root>/<split>A`` and ``<root>/<split>B`` (CycleGAN's trainA/trainB/testA/testB);
  ``domains[0]`` is stored in the A folders, ``domains[1]`` in the B folders.
- ``aligned``: ``<root>/<split>/*.jpg``, each file two images side by side (pix2pix's AB format);
  ``domains[0]`` is the left half, ``domains[1]`` the right half.
- ``class_folders``: ``<root>/<split>/<domain>/`` (AFHQ), or flat ``<root>/<domain>/`` with a derived split.
- ``generated``: the built-in toy set, written in BOTH the unaligned and the aligned layout under one root.

Directions are named ``<source>2<target>`` with the spec's domain names ("label2photo"); "AtoB"/"BtoA" are
accepted as aliases relative to the file layout (A = ``domains[0]``, B = ``domains[1]``), as in the
official ``--direction`` flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from bench.errors import UnknownNameError, UsageError, closest

LAYOUTS = ("unaligned", "aligned", "class_folders", "generated")


@dataclass(frozen=True)
class Download:
    """One archive to fetch: mirror URLs (tried in order), file name, and its sha256 when known."""

    urls: tuple[str, ...]
    filename: str
    sha256: str | None = None
    size: int | None = None
    #: Where the sha256 comes from (so a reader can check it).
    sha256_source: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything bench knows about one dataset (immutable)."""

    name: str
    layout: str
    #: Pixel-aligned pairs exist (paired methods can train on it).
    aligned: bool
    #: Domain names; their order defines A (index 0) and B (index 1) of the file layout.
    domains: tuple[str, ...]
    default_direction: str
    #: Logical split -> candidate folder names, first existing wins (e.g. test -> ("val", "test")).
    splits: Mapping[str, tuple[str, ...]]
    #: Expected images per logical split and domain in the official release.
    counts: Mapping[str, Mapping[str, int]]
    downloads: tuple[Download, ...] = ()
    #: Stored image size (width, height) of one file in the official release, for messages and checks.
    image_size: tuple[int, int] | None = None
    #: Aligned layouts: width / height of one side-by-side A|B file (two square images: 2). Every file of a
    #: paired split is checked against it before training.
    pair_aspect: float = 2.0
    citation: str = ""
    licence: str = ""
    notes: str = ""
    #: Metrics of scope "dataset" (bench.metrics.catalog) scored on this dataset, per canonical direction (e.g.
    #: Cityscapes' DRN scores for label2photo only). Scope "always" metrics (FID, KID, SWD) are scored on every
    #: dataset and scope "aligned" ones (L1, PSNR, SSIM) on every aligned dataset without being listed here.
    eval_metrics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Splits that must exist; others (facades' val) are optional.
    required_splits: tuple[str, ...] = ("train", "test")
    #: Manual preparation steps when there is no public download (Cityscapes).
    manual_instructions: str = ""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"{self.name}: layout {self.layout!r} not in {LAYOUTS}")
        if self.default_direction not in self.directions:
            raise ValueError(f"{self.name}: default direction {self.default_direction!r} not in {self.directions}")
        from bench.metrics import catalog

        for direction, names in self.eval_metrics.items():
            if direction not in self.directions:
                raise ValueError(f"{self.name}: eval_metrics direction {direction!r} not in {self.directions}")
            for m in names:
                if m not in catalog.CATALOG or catalog.CATALOG[m].scope != "dataset":
                    raise ValueError(f"{self.name}: eval_metrics[{direction!r}] lists {m!r}, not a catalogue metric "
                                     f"of scope 'dataset' ({', '.join(catalog.names(scope='dataset'))})")

    def dataset_metrics(self, direction: str | None = None) -> tuple[str, ...]:
        """The scope-"dataset" metrics scored in `direction` (a direction name or alias; None = the default)."""
        return tuple(self.eval_metrics.get(self.normalize_direction(direction), ()))

    @property
    def directions(self) -> tuple[str, ...]:
        """Every valid canonical direction, default first (e.g. ('label2photo', 'photo2label'))."""
        pairs = [f"{s}2{t}" for s in self.domains for t in self.domains if s != t]
        pairs.remove(self.default_direction)
        return (self.default_direction, *pairs)

    @property
    def urls(self) -> tuple[str, ...]:
        """All download URLs (first mirror of each archive first)."""
        return tuple(u for d in self.downloads for u in d.urls)

    @property
    def sha256(self) -> dict[str, str | None]:
        """Archive file name -> known sha256 (None when unknown)."""
        return {d.filename: d.sha256 for d in self.downloads}

    @property
    def downloadable(self) -> bool:
        return bool(self.downloads)

    def resolve_direction(self, direction: str | None = None, domains: tuple[str, str] | None = None
                          ) -> tuple[str, str]:
        """(source, target) domain names for a direction name, an (src, dst) tuple, or the default."""
        if domains is not None:
            if direction is not None:
                raise UsageError(f"{self.name}: pass either direction={direction!r} or domains={domains!r}, not both")
            if len(domains) != 2:
                raise UsageError(f"{self.name}: domains must be (source, target), got {domains!r}")
            direction = f"{domains[0]}2{domains[1]}"
        name = self.normalize_direction(direction)
        src, _, dst = name.partition("2")
        return src, dst

    def normalize_direction(self, direction: str | None) -> str:
        """The canonical `<src>2<dst>` name of a direction ('BtoA' -> 'label2photo'); None -> the default."""
        if direction is None:
            return self.default_direction
        if direction in ("AtoB", "BtoA"):
            a, b = self.domains[0], self.domains[1]
            return f"{a}2{b}" if direction == "AtoB" else f"{b}2{a}"
        if direction in self.directions:
            return direction
        valid = [*self.directions, "AtoB", "BtoA"]
        raise UsageError(f"dataset {self.name!r} has no direction {direction!r}{closest(direction, valid)}; "
                         f"valid: {', '.join(valid)}")

    def layout_direction(self, direction: str | None) -> str | None:
        """'AtoB'/'BtoA' of the file layout for a two-domain direction, else None (e.g. 'cat2wild')."""
        src, dst = self.resolve_direction(direction)
        a, b = self.domains[0], self.domains[1]
        if (src, dst) == (a, b):
            return "AtoB"
        if (src, dst) == (b, a):
            return "BtoA"
        return None

    def check_split(self, split: str) -> tuple[str, ...]:
        """Candidate folder names of a logical split (UsageError listing valid splits otherwise)."""
        if split not in self.splits:
            raise UsageError(f"dataset {self.name!r} has no split {split!r}{closest(split, self.splits)}; "
                             f"valid: {', '.join(self.splits)}")
        return self.splits[split]


# --------------------------------------------------------------------------- citations and terms

_PIX2PIX = ("Isola, Zhu, Zhou, Efros. Image-to-Image Translation with Conditional Adversarial Networks. "
            "CVPR 2017.")
_CYCLEGAN = ("Zhu, Park, Isola, Efros. Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial "
             "Networks. ICCV 2017.")
_EFROS = "http://efrosgans.eecs.berkeley.edu"

# TensorFlow Datasets pins the CycleGAN zips (tensorflow/datasets:tensorflow_datasets/url_checksums/cycle_gan.txt).
_TFDS = "tensorflow/datasets@333639b:tensorflow_datasets/url_checksums/cycle_gan.txt"

DATASETS: dict[str, DatasetSpec] = {}


def _add(spec: DatasetSpec) -> None:
    DATASETS[spec.name] = spec


_add(DatasetSpec(
    name="cityscapes",
    layout="aligned",
    aligned=True,
    domains=("photo", "label"),
    default_direction="label2photo",  # CUT's pretrained launcher: direction=BtoA
    splits={"train": ("train",), "test": ("val", "test"), "val": ("val", "test")},
    counts={"train": {"photo": 2975, "label": 2975}, "test": {"photo": 500, "label": 500},
            "val": {"photo": 500, "label": 500}},
    image_size=(512, 256),
    citation="Cordts et al. The Cityscapes Dataset for Semantic Urban Scene Understanding. CVPR 2016; "
             "prepared as in " + _PIX2PIX,
    licence="Cityscapes terms: non-commercial research and teaching only; redistribution not permitted.",
    notes="Side-by-side photo|colour-label files, 256x256 each. The test split is the official val set (500). "
          "CUT evaluated FID against its own resized+JPEG val set (cityscapes_val_for_CUT.tar); FID differs.",
    eval_metrics={"label2photo": ("miou", "pixel_acc", "class_acc")},  # DRN segments generated photos
    manual_instructions=(
        "Cityscapes needs a login, so bench cannot download it.\n"
        "1. Register at https://www.cityscapes-dataset.com and download gtFine_trainvaltest.zip and "
        "leftImg8bit_trainvaltest.zip (Downloads page); unzip both.\n"
        "2. Run the pix2pix/CycleGAN preparation script (datasets/prepare_cityscapes_dataset.py in "
        "junyanz/pytorch-CycleGAN-and-pix2pix or taesungp/contrastive-unpaired-translation):\n"
        "   python prepare_cityscapes_dataset.py --gtFine_dir gtFine --leftImg8bit_dir leftImg8bit "
        "--output_dir {root}\n"
        "   It writes {root}/train/ (2975) and {root}/test/ (500, from val) with 512x256 photo|label files "
        "(plus trainA/trainB/testA/testB, unused by bench). A pix2pix-style folder with train/ and val/ works too.\n"
        "   Prepare with Pillow<7 to match the papers (newer Pillow resizes label maps with BICUBIC, blending "
        "colours; see DCLGAN's README).\n"
        "3. Point bench at it: --data-root {root}, or put it at $BENCH_DATA_ROOT/cityscapes, "
        "then run `bench data check cityscapes`.\n"
        "CUT's FID reference set (resized + JPEG val images): "
        f"{_EFROS}/CUT/datasets/cityscapes_val_for_CUT.tar"),
))

_add(DatasetSpec(
    name="horse2zebra",
    layout="unaligned",
    aligned=False,
    domains=("horse", "zebra"),
    default_direction="horse2zebra",
    splits={"train": ("train",), "test": ("test",)},
    counts={"train": {"horse": 1067, "zebra": 1334}, "test": {"horse": 120, "zebra": 140}},
    downloads=(Download(
        urls=(f"{_EFROS}/cyclegan/datasets/horse2zebra.zip",
              "https://people.eecs.berkeley.edu/~taesung_park/CycleGAN/datasets/horse2zebra.zip"),
        filename="horse2zebra.zip",
        sha256="a74d9d392eecca9966b51287a76ca126af473d9de4f3e8fc0e9cda08fa1730a1",
        size=116867962,
        sha256_source=_TFDS),),
    image_size=(256, 256),
    citation=_CYCLEGAN,
    licence="ImageNet-derived images (synsets n02381460, n02391049): ImageNet non-commercial research terms.",
    notes="Counts verified against the LFS manifest of the full dataset (1067/1334/120/140); the paper text "
          "says 939/1177 (paper-era counts).",
))

_add(DatasetSpec(
    name="afhq",
    layout="class_folders",
    aligned=False,
    domains=("cat", "dog", "wild"),
    default_direction="cat2dog",
    # The official zip has val/, not test/ (CUT's README symlinks test/...).
    splits={"train": ("train",), "test": ("val", "test"), "val": ("val", "test")},
    counts={"train": {"cat": 5153, "dog": 4739, "wild": 4738},
            "test": {"cat": 500, "dog": 500, "wild": 500},
            "val": {"cat": 500, "dog": 500, "wild": 500}},
    downloads=(Download(
        # clovaai/stargan-v2@875b70a:download.sh links ...afhq.zip?dl=0 (a preview page for browsers);
        # dl=1 asks Dropbox for the file itself.
        urls=("https://www.dropbox.com/s/t9l9o3vsx2jai3z/afhq.zip?dl=1",),
        filename="afhq.zip"),),
    image_size=(512, 512),
    citation="Choi, Uh, Yoo, Ha. StarGAN v2: Diverse Image Synthesis for Multiple Domains. CVPR 2020.",
    licence="CC BY-NC 4.0 (NAVER Corp.): non-commercial use, with attribution.",
    notes="AFHQ v1 (512x512 JPEG). Flat <root>/{cat,dog,wild}/ folders without train/val are split "
          "deterministically (see bench.data.layout.flat_split).",
))

_add(DatasetSpec(
    name="maps",
    layout="aligned",
    aligned=True,
    domains=("satellite", "map"),
    default_direction="map2satellite",  # BicycleGAN / pix2pix map->aerial = BtoA
    splits={"train": ("train",), "test": ("val", "test"), "val": ("val", "test")},
    counts={"train": {"satellite": 1096, "map": 1096}, "test": {"satellite": 1098, "map": 1098},
            "val": {"satellite": 1098, "map": 1098}},
    downloads=(Download(
        urls=(f"{_EFROS}/pix2pix/datasets/maps.tar.gz",),
        filename="maps.tar.gz"),),
    image_size=(1200, 600),
    citation=_PIX2PIX,
    licence="Google Maps imagery scraped for research by the pix2pix authors; Google's terms apply "
            "(research use only).",
    notes="Side-by-side aerial|map files, 600x600 each. The test split is val/ (1098).",
))

_add(DatasetSpec(
    name="facades",
    layout="aligned",
    aligned=True,
    domains=("photo", "label"),
    default_direction="label2photo",  # pix2pix facades script: --direction BtoA
    splits={"train": ("train",), "test": ("test",), "val": ("val",)},
    counts={"train": {"photo": 400, "label": 400}, "test": {"photo": 106, "label": 106},
            "val": {"photo": 100, "label": 100}},
    downloads=(Download(
        urls=(f"{_EFROS}/pix2pix/datasets/facades.tar.gz",),
        filename="facades.tar.gz"),),
    image_size=(512, 256),
    citation="Tylecek, Sara. Spatial Pattern Templates for Recognition of Objects with Regular Structure. "
             "GCPR 2013 (CMP Facade Database); prepared as in " + _PIX2PIX,
    licence="CMP Facade Database: research purposes, citation requested by its authors.",
    notes="Side-by-side photo|label files, 256x256 each.",
))

_add(DatasetSpec(
    name="toy",
    layout="generated",
    aligned=True,
    domains=("circles", "squares"),
    default_direction="circles2squares",
    splits={"train": ("train",), "test": ("test",)},
    counts={"train": {"circles": 32, "squares": 32}, "test": {"circles": 16, "squares": 16}},
    citation="bench built-in synthetic dataset (bench.data.synthetic, version toy-v1).",
    licence="Generated by bench; no third-party content.",
    notes="64x64 per domain. Same scenes drawn as filled circles on navy and as squares on sand. "
          "Unaligned train folders hold different scenes; test folders and the aligned form hold the same scenes.",
))


def dataset_names() -> list[str]:
    """Every registered dataset name."""
    return list(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset `name` (UnknownNameError listing valid names otherwise)."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown dataset {name!r}{closest(name, DATASETS)}; valid: {', '.join(DATASETS)}") from None
