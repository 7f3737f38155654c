"""The compute record of a run: how it computed (threads, precision switches, determinism, loader workers).

The record is written where the run's protocol is: the `bench.compute.*` MLflow tags, the `compute` field of
every metric fingerprint (metrics.json, the flat `bench.protocol.<metric>.compute.*` tags, protocol.json).
`bench table` reads it back to give runs with non-default switches their own footnoted row. Torch-free, so
tables and status commands stay light; bench.precision applies the switches.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from bench.config import PRECISIONS

if TYPE_CHECKING:
    from bench.config import TrainConfig

#: The compute switches and their papers' defaults, as recorded (tags, fingerprints, tables).
SWITCH_DEFAULTS = {"precision": PRECISIONS[0], "channels_last": False, "compile": False, "tf32": False}

#: MLflow tag prefix of the compute record (`bench.compute.precision`, `bench.compute.intra_op_threads`, ...).
TAG_PREFIX = "bench.compute."


def switches(train: TrainConfig) -> dict[str, Any]:
    """The compute switches of a run config."""
    return {k: getattr(train, k) for k in SWITCH_DEFAULTS}


def non_default(record: Mapping[str, Any]) -> dict[str, Any]:
    """The switches of a compute record that differ from the papers' defaults."""
    return {k: record[k] for k, default in SWITCH_DEFAULTS.items() if k in record and record[k] != default}


def compute_record(train: TrainConfig, threads: Mapping[str, int], *, bitwise_continuous: bool = True,
                   thread_changes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """How a run computed: thread counts, switches, determinism, loader workers (fingerprints and tags)."""
    rec: dict[str, Any] = {"intra_op_threads": threads["intra_op"], "inter_op_threads": threads["inter_op"],
                           **switches(train), "deterministic": train.deterministic, "num_workers": train.num_workers}
    if not bitwise_continuous:
        rec["bitwise_continuous"] = False
        rec["thread_changes"] = list(thread_changes or [])
    return rec


def compute_tags(record: Mapping[str, Any]) -> dict[str, str]:
    """The compute record as flat MLflow tags."""
    return {f"{TAG_PREFIX}{k}": v if isinstance(v, str) else json.dumps(v) for k, v in record.items()}


def _typed(value: Any) -> Any:
    """A record value read back from a tag: JSON (`false`, `2`) or str() text (`False`) to its type."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in ("True", "False"):
        return text == "True"
    try:
        return json.loads(text)
    except ValueError:
        return text


def from_tags(tags: Mapping[str, str], prefix: str = TAG_PREFIX) -> dict[str, Any]:
    """The compute record in tags `<prefix><field>` (the run's `bench.compute.*`), typed."""
    return {k[len(prefix):]: _typed(v) for k, v in tags.items() if k.startswith(prefix)}


def of_fingerprint(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The compute record of a metric fingerprint: nested `compute` (metrics.json, protocol.json) or the flat
    `compute.<field>` entries the `bench.protocol.<metric>.*` tags hold; {} for runs recorded before it."""
    nested = fingerprint.get("compute")
    if isinstance(nested, Mapping):
        return {k: _typed(v) for k, v in nested.items()}
    return from_tags(fingerprint, "compute.")


def describe(record: Mapping[str, Any]) -> str:
    """A short phrase for the non-default switches of a record ('bf16 autocast, torch.compile'), '' if none."""
    words = {"precision": lambda v: f"{v} autocast", "channels_last": lambda v: "channels_last",
             "compile": lambda v: "torch.compile", "tf32": lambda v: "TF32"}
    return ", ".join(words[k](v) for k, v in non_default(record).items())


def setting(record: Mapping[str, Any]) -> dict[str, Any]:
    """The non-default switches of a record as `train.<switch>` settings (a table row's setting)."""
    return {f"train.{k}": v for k, v in non_default(record).items()}
