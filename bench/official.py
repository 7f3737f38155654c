"""The official test protocol: which checkpoint and which translated images the official test scripts score.

Published comparisons (`bench table --published`, `bench reproduce`) use this protocol by default; every other
choice stays available, is named, and is recorded in the fingerprint of each number it produced.

What the official code does (read in taesungp/contrastive-unpaired-translation@b3ac297, the base of DCLGAN,
QS-Attn and EnCo's test scripts):
- `test.py` loads `--epoch latest`, the last checkpoint; no test-set selection of an epoch exists in the code.
- it iterates the unaligned dataset, whose length is max(|A|, |B|) (`data/unaligned_dataset.py`, `__len__`),
  with A indexed `index % |A|`, so on horse2zebra (120 horses, 140 zebras) 140 translations are made and
  20 horses are translated twice;
- `util/visualizer.py:save_images` names every output after its A file, so the second translation of a
  wrapped-around horse overwrites the first: the `fake_B` folder that the README's
  `python -m pytorch_fid testB fake_B` scores holds |A| images (120 fakes against 140 reals). clean-fid's
  leaderboard (GaParmar/clean-fid docs/leaderboard.md) reproduces CUT's 45.5 with exactly 120 generated and
  140 reference images.
- the `real_B` folder the same loop writes (which DCLGAN scores against) holds, by the same overwrite, the last
  B image visited under each A name: 120 of the 140 zebras.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Checkpoint (epoch) choices, as they are labelled wherever a number appears.
EPOCH_RULES = {
    "last": "last epoch (what the official test scripts load)",
    "best": "best epoch, selected on the test set",
}

#: How the set of translated test images is built.
TEST_SETS = {
    "per_input": "each test input translated once (|A| fakes): what the official test.py leaves in its fake "
                 "folder, because a wrapped-around input is saved under its own file name and overwrites the "
                 "first translation (identical for a deterministic generator)",
    "wraparound": "every translation of the official test loop kept: max(|A|, |B|) fakes, inputs wrapping "
                  "around (A[i % |A|]), so on horse2zebra 140 fakes with 20 horses translated twice",
}

#: Reference (real) image sets.
REFERENCE_SETS = {
    "test": "every target-domain test image, resized to the crop size (CUT's README: pytorch_fid testB fake_B)",
    "official_loop": "the real_B images the official test loop re-saves: the last B visited under each A name "
                 "(DCLGAN scores its fakes against these)",
}


@dataclass(frozen=True)
class Protocol:
    """The choices that decide which images are scored."""

    epoch: str = "last"
    test_set: str = "per_input"
    reference: str = "test"

    def __post_init__(self) -> None:
        from bench.errors import UsageError

        for value, known, what in ((self.epoch, EPOCH_RULES, "epoch"), (self.test_set, TEST_SETS, "test set"),
                                   (self.reference, REFERENCE_SETS, "reference set")):
            if value not in known:
                raise UsageError(f"{what} {value!r}: use one of {', '.join(known)}")

    def record(self) -> dict[str, str]:
        """The fields written into a fingerprint."""
        return {"epoch_rule": self.epoch, "test_set": self.test_set, "reference_set": self.reference}


#: The official test scripts' protocol (see the module docstring).
OFFICIAL = Protocol()


def epoch_label(select: str) -> str:
    """'last epoch (...)' / 'best epoch, selected on the test set' for a --select value."""
    return EPOCH_RULES.get(select, select)


def official_loop(n_a: int, n_b: int) -> list[int]:
    """The A indices the official test loop visits, in order: i % |A| for i in range(max(|A|, |B|))."""
    if n_a < 1:
        return []
    return [i % n_a for i in range(max(n_a, n_b))]


def fake_indices(rule: str, n_a: int, n_b: int) -> list[int]:
    """The source indices translated (with repeats) under a test-set rule."""
    if rule == "per_input":
        return list(range(n_a))
    if rule == "wraparound":
        return official_loop(n_a, n_b)
    raise KeyError(rule)


def loop_references(n_a: int, n_b: int) -> list[int]:
    """The B indices left in the official loop's real_B folder, one per A name (the last B saved under it).

    One file per A name, so |A| images: with |B| > |A| some B images are missing, with |B| < |A| some repeat.
    """
    if n_b < 1:
        return []
    last: dict[int, int] = {}
    for i, a in enumerate(official_loop(n_a, n_b)):
        last[a] = i % n_b
    return [last[a] for a in sorted(last)]
