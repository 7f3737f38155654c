"""The one training loop for every method: schedule, evaluation cadence, checkpoints, resume.

It knows nothing about a particular method: it calls `method.setup`, `method.train_step`,
`method.on_epoch_start`, `method.data_jitter` and `method.lr_lambda` (methods/base.py).

Reproducibility: the data a step sees is a pure function of (seed, epoch, position) (bench.data), every
global RNG is checkpointed, evaluation runs with the RNGs saved and restored so it never perturbs training,
and checkpoints are written atomically at epoch ends (and every `train.save_every` iterations). A run killed
at any point and resumed from `last.pt` therefore ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from bench import seeding
from bench.checkpoint import RESTORE_HINT, TRAINING_STATE, atomic_write_json, load_checkpoint, save_checkpoint
from bench.config import RunConfig
from bench.errors import CheckpointError
from bench.images import save_png
from bench.metrics.catalog import is_better

log = logging.getLogger(__name__)

@dataclass
class LoopState:
    """Where the loop is: the next (epoch, batch position) to run, plus the evaluation history."""

    epoch: int = 1
    batch_pos: int = 0
    iteration: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None  # {"epoch": e, "value": v}
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch_pos": self.batch_pos, "iteration": self.iteration,
                "history": self.history, "best": self.best, "finished": self.finished}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LoopState":
        return cls(**d)


@contextlib.contextmanager
def preserved_rng():
    """Run a block (evaluation) without changing any global RNG state."""
    state = seeding.rng_state()
    try:
        yield
    finally:
        seeding.set_rng_state(state)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled order of training items for an epoch: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, keep lists of everything else."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


class Trainer:
    """Runs one method on one dataset for its schedule, evaluating and checkpointing along the way."""

    def __init__(self, cfg: RunConfig, method, train_ds, evaluator, tracker, run_dir: Path,
                 on_eval: Callable[[int, dict[str, float]], None] | None = None) -> None:
        self.cfg, self.method, self.ds, self.evaluator, self.tracker = cfg, method, train_ds, evaluator, tracker
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.on_eval = on_eval
        mc = method.cfg
        self.batch_size = mc.batch_size
        n_items = len(train_ds) if not cfg.data.max_train else min(cfg.data.max_train, len(train_ds))
        self.n_items = n_items
        # Methods that need full batches (BicycleGAN's halves) skip a short last batch, as the official loop does.
        self.n_batches = n_items // self.batch_size if self.batch_size > 1 else n_items
        if self.n_batches < 1:
            from bench.errors import DataError

            raise DataError(f"{cfg.dataset}: {n_items} training items cannot fill one batch of {self.batch_size}")
        self.total_epochs = mc.total_epochs
        # Training ends at the schedule's last epoch, or earlier at an iteration budget: the method's own
        # (NICE-GAN/MUNIT count iterations) or the user's train.max_iters, whichever comes first.
        budgets = [b for b in (cfg.train.max_iters, method.max_iterations()) if b]
        self.iteration_budget = min(budgets) if budgets else 0
        if self.iteration_budget:
            self.total_epochs = min(self.total_epochs, math.ceil(self.iteration_budget / self.n_batches))
        self.total_iterations = self.total_epochs * self.n_batches
        if self.iteration_budget:
            self.total_iterations = min(self.total_iterations, self.iteration_budget)
        every = cfg.train.eval_every or max(1, math.ceil(self.total_epochs / 10))
        self.eval_every = every
        self.state = LoopState()
        self.schedulers: dict[str, LambdaLR] = {}
        #: metric key -> last step MLflow already holds (from before a resume); replayed steps are not re-logged.
        self._logged_until: dict[str, int] = {}

    def _log_metrics(self, metrics: dict[str, float], step: int) -> None:
        fresh = {k: v for k, v in metrics.items() if step > self._logged_until.get(k, -1)}
        if fresh:
            self.tracker.log_metrics(fresh, step=step)

    # ----------------------------------------------------------------- data
    def batch_at(self, epoch: int, pos: int) -> dict[str, Any]:
        order = epoch_order(self.cfg.seed, epoch, self.n_items)
        idx = order[pos * self.batch_size:(pos + 1) * self.batch_size]
        return collate([self.ds[int(i)] for i in idx])

    # ----------------------------------------------------------------- setup / resume
    def setup(self, resume: bool) -> None:
        """Data-dependent init + optimisers + schedulers; then, with `resume`, the saved state."""
        self.ds.set_epoch(1, jitter=self.method.data_jitter(1))
        self.method.setup(self.batch_at(1, 0))
        self.schedulers = {k: LambdaLR(opt, self.method.lr_lambda) for k, opt in self.method.optimizers.items()}
        last = self.ckpt_dir / "last.pt"
        if resume and last.is_file():
            ckpt = load_checkpoint(last, map_location=self.method.device, require=TRAINING_STATE)
            try:
                self.method.load_state_dict(ckpt["method"])
                for k, sd in ckpt["schedulers"].items():
                    self.schedulers[k].load_state_dict(sd)
                self.state = LoopState.from_dict(ckpt["loop"])
                seeding.set_rng_state(ckpt["rng"])
            except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
                detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
                raise CheckpointError(f"checkpoint {last} does not fit this run ({type(exc).__name__}: {detail}); "
                                      f"{RESTORE_HINT}") from None
            # Steps logged after this checkpoint was written are replayed now: MLflow already has them.
            self._logged_until = self.tracker.last_steps(("train/", "eval/"))
            log.info("resumed %s at epoch %d, batch %d (iteration %d)", self.run_dir, self.state.epoch,
                     self.state.batch_pos, self.state.iteration)

    def save(self) -> None:
        save_checkpoint(self.ckpt_dir / "last.pt", {
            "method": self.method.state_dict(),
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "loop": self.state.to_dict(),
            "rng": seeding.rng_state(),
            "config_hash": self.cfg.config_hash(),
        })

    def save_best(self, epoch: int, value: float) -> None:
        save_checkpoint(self.ckpt_dir / "best.pt", {
            "method": {"nets": {k: v.state_dict() for k, v in self.method.nets.items()}},
            "epoch": epoch, "metric": self.cfg.train.select_metric, "value": value,
            "config_hash": self.cfg.config_hash(),
        })

    # ----------------------------------------------------------------- loop
    def run(self, progress=None) -> LoopState:
        st, m, cfg = self.state, self.method, self.cfg
        if st.finished:
            return st
        max_iters = self.iteration_budget
        sums: dict[str, torch.Tensor] = {}
        count = 0
        t0, it0 = time.perf_counter(), st.iteration
        task = progress.add_task(f"{cfg.method}/{cfg.dataset}/seed{cfg.seed}",
                                 total=self.total_iterations,
                                 completed=(st.epoch - 1) * self.n_batches + st.batch_pos) if progress else None
        m.train()
        while st.epoch <= self.total_epochs:
            epoch = st.epoch
            m.on_epoch_start(epoch)
            self.ds.set_epoch(epoch, jitter=m.data_jitter(epoch))
            order = epoch_order(cfg.seed, epoch, self.n_items)
            while st.batch_pos < self.n_batches:
                idx = order[st.batch_pos * self.batch_size:(st.batch_pos + 1) * self.batch_size]
                batch = collate([self.ds[int(i)] for i in idx])
                losses = m.train_step(batch)
                st.batch_pos += 1
                st.iteration += 1
                if m.schedule_unit == "iteration":
                    for s in self.schedulers.values():
                        s.step()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                if st.iteration % cfg.train.log_every == 0 or st.batch_pos == self.n_batches:
                    means = {f"train/{k}": float(v) / count for k, v in sums.items()}
                    sums, count = {}, 0
                    self._log_metrics(means, step=st.iteration)
                    if progress:
                        rate = (st.iteration - it0) / max(1e-9, time.perf_counter() - t0)
                        desc = " ".join(f"{k[6:]}={v:.3f}" for k, v in list(means.items())[:4])
                        progress.update(task, completed=(epoch - 1) * self.n_batches + st.batch_pos,
                                        description=f"ep {epoch}/{self.total_epochs} {rate:.1f} it/s {desc}")
                if cfg.train.save_every and st.iteration % cfg.train.save_every == 0 and st.batch_pos < self.n_batches:
                    self.save()
                if max_iters and st.iteration >= max_iters:
                    break
            stopped_early = bool(max_iters and st.iteration >= max_iters)
            if st.batch_pos >= self.n_batches:
                if m.schedule_unit == "epoch":
                    for s in self.schedulers.values():
                        s.step()
                self._log_metrics({"train/lr": self._lr()}, step=st.iteration)
            if epoch % self.eval_every == 0 or epoch == self.total_epochs or stopped_early:
                self.evaluate_epoch(epoch)
            if st.batch_pos >= self.n_batches:
                st.epoch, st.batch_pos = epoch + 1, 0
            if stopped_early:
                break
            self.save()
        st.finished = True
        self.save()
        if progress:
            progress.update(task, completed=self.total_iterations)
        return st

    def _lr(self) -> float:
        first = next(iter(self.method.optimizers.values()))
        return float(first.param_groups[0]["lr"])

    def evaluate_epoch(self, epoch: int) -> None:
        """Quick held-out evaluation + sample grid; updates best.pt; calls on_eval (may raise TrialPruned)."""
        cfg, st, m = self.cfg, self.state, self.method
        metric = cfg.train.select_metric
        with preserved_rng():
            m.eval()
            try:
                scores = self.evaluator.quick(m, cfg.train.eval_n, metric)
                grid_path = self.run_dir / "samples" / f"epoch_{epoch:04d}.png"
                save_png(self.evaluator.sample_grid(m), grid_path)
            finally:
                m.train()
        self.tracker.log_artifact(grid_path, "samples")
        entry = {"epoch": epoch, "iteration": st.iteration, **scores}
        st.history = [h for h in st.history if h["epoch"] != epoch] + [entry]
        if scores:
            self._log_metrics({f"eval/{k}": v for k, v in scores.items()}, step=epoch)
            value = scores[metric]
            if is_better(metric, value, st.best["value"] if st.best else None):
                st.best = {"epoch": epoch, "value": value}
                self.save_best(epoch, value)
        else:
            # No selectable metric (e.g. no Inception weights): "best" is the latest evaluated epoch.
            st.best = {"epoch": epoch, "value": float("nan")}
            self.save_best(epoch, float("nan"))
        atomic_write_json(self.run_dir / "history.json", st.history)
        if self.on_eval is not None and scores:
            self.on_eval(epoch, scores)


def load_last_nets_into(method, run_dir: Path) -> None:
    """Load the nets of last.pt into `method` (after a failed best.pt load)."""
    ckpt = load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt", map_location=method.device, require=("method",))
    method.load_state_dict(ckpt["method"])


def load_best_into(method, run_dir: Path) -> int:
    """Load best.pt's nets into `method`; returns its epoch. CheckpointError when unusable (a file that does not
    fit may have been loaded in part: reload the last weights with `load_last_nets_into`)."""
    path = Path(run_dir) / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(path, map_location=method.device, require=("method", "epoch"))
    try:
        nets = ckpt["method"]["nets"]
        unknown = sorted(set(nets) - set(method.nets))
        if unknown:
            raise KeyError(f"nets {unknown}")
        for k, sd in nets.items():
            method.nets[k].load_state_dict(sd)
        return int(ckpt["epoch"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit this run ({type(exc).__name__}: "
                              f"{str(exc).strip()[:160]}); {RESTORE_HINT}") from None
