"""Opt-in speed switches of the training step and the compute record of a run.

`train.precision` (fp32 | bf16 | fp16 autocast, fp16 with a GradScaler), `train.channels_last`,
`train.compile` and `train.tf32` change what a run computes (rounding, kernel choice), so they are part of the
run's protocol: the MLflow params, the `bench.compute.*` tags, the `compute` field of every metric fingerprint
(`compute_record`) and a table footnote (bench.tables) say which were on. The defaults are the papers':
fp32, eager, contiguous, no TF32, deterministic.

Methods never call `loss.backward()` or `optimizer.step()` themselves: they call `backward(loss)` and
`optimizer_step(optimizer)` (re-exported by methods.base), which go through the GradScaler of the active `Amp`
(`Amp.train_step` sets it around one `method.train_step`) and are plain calls otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from typing import TYPE_CHECKING, Any, Iterator

import torch

# The record of what a run computed lives torch-free in bench.compute; re-exported for the training side.
from bench.compute import (SWITCH_DEFAULTS, TAG_PREFIX, compute_record, compute_tags, describe,  # noqa: F401
                           non_default, switches)
from bench.config import PRECISIONS
from bench.errors import ConfigError

if TYPE_CHECKING:
    from bench.config import TrainConfig

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

_ACTIVE: contextvars.ContextVar["Amp | None"] = contextvars.ContextVar("bench_amp", default=None)


class Amp:
    """Autocast (bf16/fp16) and, for fp16, one GradScaler shared by every optimiser of the method."""

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"train.precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.device_type = torch.device(device).type
        self.dtype = DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(self.device_type) if precision == "fp16" else None
        #: Scaled backward passes and steps since creation (the contract test checks methods use them).
        self.backwards = 0
        self.steps = 0
        self._via_step = False

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @contextlib.contextmanager
    def train_step(self) -> Iterator[None]:
        """Around one `method.train_step`: autocast on, this Amp active, the scaler updated at the end."""
        token = _ACTIVE.set(self)
        try:
            with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled):
                yield
        finally:
            _ACTIVE.reset(token)
        if self.scaler is not None:
            self.scaler.update()

    def guard(self, optimizers) -> None:
        """Make a direct `optimizer.step()` under a GradScaler an error (it would skip the unscaling)."""
        if self.scaler is None:
            return

        def check(opt, args, kwargs):
            if not self._via_step:
                raise RuntimeError(f"{type(opt).__name__}.step() called directly under train.precision=fp16; "
                                   "methods must call methods.base.optimizer_step(optimizer)")

        for opt in optimizers:
            opt.register_step_pre_hook(check)

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def backward(loss: torch.Tensor) -> None:
    """`loss.backward()`, scaled by the active GradScaler when there is one."""
    amp = _ACTIVE.get()
    if amp is not None and amp.scaler is not None:
        amp.backwards += 1
        amp.scaler.scale(loss).backward()
    else:
        loss.backward()


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.step()`, through the active GradScaler (unscale, skip on inf/nan) when there is one."""
    amp = _ACTIVE.get()
    if amp is not None and amp.scaler is not None:
        amp.steps += 1
        amp._via_step = True
        try:
            amp.scaler.step(optimizer)
        finally:
            amp._via_step = False
    else:
        optimizer.step()


def float32_math(fn):
    """Decorator: run `fn` with autocast off and its half-precision tensor arguments in float32.

    For loss math whose small values underflow in fp16 (L2 norms of small features, cosine similarities of
    near-zero rows: NaN losses). With autocast off and float32 inputs (the papers' setting) `fn` is called
    as it is, so float32 runs are unchanged to the bit.
    """

    def half(x) -> bool:
        return isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16)

    def up(x):
        return x.float() if half(x) else x

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [x for x in (*args, *kwargs.values()) if isinstance(x, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"
        if not torch.is_autocast_enabled(device) and not any(half(x) for x in tensors):
            return fn(*args, **kwargs)
        with torch.autocast(device, enabled=False):
            return fn(*(up(a) for a in args), **{k: up(v) for k, v in kwargs.items()})

    return wrapper


def configure_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions (Ampere+); no effect on CPU."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def prepare_nets(method, train: TrainConfig) -> None:
    """channels_last and torch.compile of every net, in place (state_dict keys stay the official ones)."""
    for net in method.nets.values():
        if train.channels_last:
            net.to(memory_format=torch.channels_last)
        if train.compile:
            net.compile()


def to_memory_format(batch: dict[str, Any], train: TrainConfig) -> dict[str, Any]:
    """The batch's 4-D image tensors in channels_last when that switch is on."""
    if not train.channels_last:
        return batch
    return {k: v.contiguous(memory_format=torch.channels_last) if isinstance(v, torch.Tensor) and v.dim() == 4 else v
            for k, v in batch.items()}
