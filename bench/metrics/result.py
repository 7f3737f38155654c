"""The one result type every metric returns: a number with its spread, details and protocol fingerprint."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class MetricResult:
    """One metric's outcome. `value is None` exactly when `unavailable` says why it could not be computed."""

    name: str
    value: float | None
    std: float | None = None
    #: Extra numbers (per-level SWD, per-class IoU, subset counts); all floats so they can go to MLflow.
    details: Mapping[str, float] = field(default_factory=dict)
    #: The reason the metric is absent (missing weights, ...); None when `value` is a number.
    unavailable: str | None = None
    #: The protocol that produced the number (bench.metrics.protocol.fingerprint).
    fingerprint: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.value is None) == (self.unavailable is None):
            raise ValueError(f"MetricResult {self.name}: give exactly one of value or unavailable")
        if self.value is not None and not math.isfinite(self.value):
            # Infinite or NaN numbers are never reported silently: callers turn them into `unavailable`.
            raise ValueError(f"MetricResult {self.name}: value {self.value} is not finite")

    @property
    def higher_is_better(self) -> bool:
        """From the metric catalogue (bench.metrics.catalog), the one place that says so."""
        from bench.metrics.catalog import higher_is_better

        return higher_is_better(self.name)

    @property
    def available(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain floats, nested fingerprint)."""
        return {
            "name": self.name,
            "value": None if self.value is None else float(self.value),
            "std": None if self.std is None else float(self.std),
            "details": {k: float(v) for k, v in self.details.items()},
            "higher_is_better": self.higher_is_better,
            "unavailable": self.unavailable,
            "fingerprint": dict(self.fingerprint),
        }

    @classmethod
    def missing(cls, name: str, reason: str, *, fingerprint: Mapping[str, Any] | None = None) -> "MetricResult":
        """A result that says why the metric could not be computed."""
        return cls(name=name, value=None, unavailable=reason, fingerprint=dict(fingerprint or {}))
