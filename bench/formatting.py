"""Numbers for people: hyperparameters to 3 significant digits, metrics at their catalogue precision.

Every surface (tables, row labels, plot ticks and legends, log lines) formats through these functions, so a
learning rate reads `2.5e-4` everywhere instead of `0.0002504130762999892` in one place and `0.00025` in another.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

#: Significant digits of a hyperparameter shown to a person.
PARAM_DIGITS = 3


def human(value: Any, digits: int = PARAM_DIGITS) -> str:
    """A hyperparameter value as text: ints as they are, floats to `digits` significant digits.

    0.0002504130762999892 -> '2.5e-4', 1.0 -> '1', 0.25 -> '0.25', 64 -> '64', '0.00025' -> '2.5e-4',
    True -> 'True', 'resnet_9blocks' -> 'resnet_9blocks'.
    """
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, str):
        number = _as_number(value)
        if number is None:
            return value
        value = number
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or 1e-2 <= abs(value) < 1e4:
            return f"{value:.{digits}g}"
        mantissa, _, exponent = f"{value:.{digits - 1}e}".partition("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"  # 2.50e-04 -> 2.5e-4: no padding, no plus sign
    return str(value)


def human_params(params: Mapping[str, Any], sep: str = ", ") -> str:
    """{'lr': 0.00025041, 'num_patches': 64} -> 'lr=2.5e-4, num_patches=64' (keys in the given order)."""
    return sep.join(f"{k}={human(v)}" for k, v in params.items())


def _as_number(text: str) -> int | float | None:
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def duration(seconds: float) -> str:
    """7 -> '0:07', 3725 -> '1:02:05' (like a clock; for ETAs and elapsed times)."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rate(seconds_per_iteration: float) -> str:
    """Iteration speed the readable way round: '3.2 it/s' when fast, '12.5 s/it' when slow."""
    if seconds_per_iteration is None or not math.isfinite(seconds_per_iteration) or seconds_per_iteration <= 0:
        return "-- s/it"
    if seconds_per_iteration < 1.0:
        return f"{1.0 / seconds_per_iteration:.1f} it/s"
    return f"{seconds_per_iteration:.{2 if seconds_per_iteration < 10 else 1}f} s/it"


def losses(values: Mapping[str, float], digits: int = 3) -> str:
    """{'G_GAN': 0.51234, 'NCE': 2.0} -> 'G_GAN=0.512 NCE=2' (every loss, 3 significant digits)."""
    return " ".join(f"{k}={human(float(v), digits)}" for k, v in values.items())
