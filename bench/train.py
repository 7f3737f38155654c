"""The one training loop for every method: schedule, evaluation cadence, checkpoints, resume.

It knows nothing about a particular method: it calls `method.setup`, `method.train_step`,
`method.on_epoch_start`, `method.data_jitter` and `method.lr_lambda` (methods/base.py).

Failure: a non-finite loss (checked every iteration) or weight (checked before every evaluation and checkpoint)
stops the run with TrainingDiverged naming the iteration and the loss or weight, before anything is scored or
saved. Resume refuses a `last.pt` written by another method or under other settings (its config hash).

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
from bench.batches import batch_indices, collate, epoch_batches, epoch_order
from bench.checkpoint import RESTORE_HINT, TRAINING_STATE, atomic_write_json, load_checkpoint, save_checkpoint
from bench.config import RunConfig
from bench.errors import CheckpointError, TrainingDiverged
from bench.images import save_png
from bench.metrics.catalog import is_better
from bench.precision import Amp, prepare_nets, to_memory_format
from bench.tracking import tracking_metrics

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


@dataclass(frozen=True)
class Schedule:
    """How long a run trains: items and batches per epoch, epochs, iterations, and the iteration budget."""

    n_items: int
    n_batches: int
    epochs: int
    iterations: int
    budget: int
    #: Iterations of the full schedule on these items, before train.max_iters (bench.schedule compares them).
    planned: int = 0


def schedule_length(cfg: RunConfig, n_train: int, method_budget: int = 0) -> Schedule:
    """The schedule of `cfg` on `n_train` training items (what the Trainer runs; also for cost estimates)."""
    mc = cfg.method_cfg
    n_items = n_train if not cfg.data.max_train else min(cfg.data.max_train, n_train)
    # Methods that need full batches (BicycleGAN's halves) skip a short last batch, as the official loop does.
    n_batches = n_items // mc.batch_size if mc.batch_size > 1 else n_items
    # The schedule: epochs, or the method's iteration budget (NICE-GAN, MUNIT), which sets the number of epochs
    # whatever the dataset size; train.max_iters may stop either earlier (bench.schedule records the cut).
    epochs = math.ceil(method_budget / n_batches) if method_budget and n_batches else mc.total_epochs
    planned = method_budget or epochs * n_batches
    budgets = [b for b in (cfg.train.max_iters, method_budget) if b]
    budget = min(budgets) if budgets else 0
    if budget and n_batches:
        epochs = min(epochs, math.ceil(budget / n_batches))
    iterations = min(planned, budget or planned)
    return Schedule(n_items, n_batches, epochs, iterations, budget, planned)


#: After this many iterations the loop measures its speed; it says how long the rest takes when that is over
#: ETA_REPORT_SECONDS.
ETA_AFTER_ITERATIONS = 3
ETA_REPORT_SECONDS = 600.0


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '3.4 h', '2.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class Trainer:
    """Runs one method on one dataset for its schedule, evaluating and checkpointing along the way."""

    def __init__(self, cfg: RunConfig, method, train_ds, evaluator, tracker, run_dir: Path,
                 on_eval: Callable[[int, dict[str, float]], None] | None = None,
                 origin_hashes: tuple[str, ...] = ()) -> None:
        self.cfg, self.method, self.ds, self.evaluator, self.tracker = cfg, method, train_ds, evaluator, tracker
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.on_eval = on_eval
        #: Config hashes a resumed checkpoint may carry besides this config's (the settings it was written under,
        #: when a resume changes evaluation settings only).
        self.origin_hashes = tuple(origin_hashes)
        mc = method.cfg
        self.batch_size = mc.batch_size
        sched = schedule_length(cfg, len(train_ds), method.max_iterations())
        self.n_items, self.n_batches = sched.n_items, sched.n_batches
        if self.n_batches < 1:
            from bench.errors import DataError

            raise DataError(f"{cfg.dataset}: {self.n_items} training items cannot fill one batch of {self.batch_size}")
        self.iteration_budget = sched.budget
        self.total_epochs, self.total_iterations = sched.epochs, sched.iterations
        self.planned_iterations = sched.planned
        every = cfg.train.eval_every or max(1, math.ceil(self.total_epochs / 10))
        self.eval_every = every
        self.state = LoopState()
        self.schedulers: dict[str, LambdaLR] = {}
        self.amp = Amp(cfg.train.precision, method.device)
        self.progress = None  # a bench.progress run handle while `run` is going
        #: metric key -> last step MLflow already holds (from before a resume); replayed steps are not re-logged.
        self._logged_until: dict[str, int] = {}

    def _log_metrics(self, metrics: dict[str, float], step: int) -> None:
        fresh = {k: v for k, v in metrics.items() if step > self._logged_until.get(k, -1)}
        if fresh:
            self.tracker.log_metrics(fresh, step=step)

    # ----------------------------------------------------------------- data
    def order(self, epoch: int) -> np.ndarray:
        """The epoch's item order: shuffled here, unless the dataset draws its own (stream sampling modes)."""
        if getattr(self.ds, "shuffled", True):
            return epoch_order(self.cfg.seed, epoch, self.n_items)
        return np.arange(self.n_items)

    def batch_at(self, epoch: int, pos: int) -> dict[str, Any]:
        return collate([self.ds[i] for i in batch_indices(self.order(epoch), self.batch_size, pos)])

    # ----------------------------------------------------------------- setup / resume
    def setup(self, resume: bool) -> None:
        """Data-dependent init + optimisers + schedulers; then, with `resume`, the saved state."""
        self.ds.set_epoch(1, jitter=self.method.data_jitter(1))
        self.method.setup(self.batch_at(1, 0))
        self.schedulers = {k: LambdaLR(opt, self.method.lr_lambda) for k, opt in self.method.optimizers.items()}
        prepare_nets(self.method, self.cfg.train)
        self.amp.guard(self.method.optimizers.values())
        last = self.ckpt_dir / "last.pt"
        if resume and last.is_file():
            ckpt = load_checkpoint(last, map_location=self.method.device, require=TRAINING_STATE)
            check_origin(ckpt, self.cfg, last, self.origin_hashes)
            try:
                self.method.load_state_dict(ckpt["method"])
                self.amp.load_state_dict(ckpt.get("amp", {}))
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
        self.check_weights()
        save_checkpoint(self.ckpt_dir / "last.pt", {
            "method": self.method.state_dict(),
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "loop": self.state.to_dict(),
            "rng": seeding.rng_state(),
            "amp": self.amp.state_dict(),
            **origin(self.cfg),
        })

    def save_best(self, epoch: int, value: float) -> None:
        save_checkpoint(self.ckpt_dir / "best.pt", {
            "method": {"nets": {k: v.state_dict() for k, v in self.method.nets.items()}},
            "epoch": epoch, "metric": self.cfg.train.select_metric, "value": value,
            **origin(self.cfg),
        })

    # ----------------------------------------------------------------- divergence
    def _where(self) -> str:
        c = self.cfg
        return f"{c.method}/{c.dataset}/seed{c.seed}"

    def check_losses(self, losses: dict[str, Any], iteration: int, epoch: int) -> None:
        """TrainingDiverged naming the first non-finite loss of `iteration` (one device sync per iteration)."""
        if not losses:
            return
        values = [torch.as_tensor(v, device=self.method.device).detach().float().reshape(-1) for v in losses.values()]
        if bool(torch.isfinite(torch.cat(values)).all()):
            return
        name, value = next((k, v) for k, v in zip(losses, values) if not bool(torch.isfinite(v).all()))
        raise TrainingDiverged(f"{self._where()}: loss {name} = {float(value.flatten()[0])} at iteration {iteration} "
                               f"(epoch {epoch}); the run stopped as failed and is not scored: lower the learning "
                               "rate or check the loss weights")

    def check_weights(self) -> None:
        """TrainingDiverged naming the first non-finite parameter (before an evaluation or a checkpoint)."""
        params = [(f"{net}.{name}", p) for net, module in self.method.nets.items()
                  for name, p in module.named_parameters()]
        if not params:
            return
        ok = torch.stack([torch.isfinite(p.detach()).all() for _, p in params])  # one sync
        if bool(ok.all()):
            return
        bad = params[int((~ok).nonzero()[0])][0]
        st = self.state
        raise TrainingDiverged(f"{self._where()}: weight {bad} is not finite after iteration {st.iteration} "
                               f"(epoch {st.epoch}); the run stopped as failed and is not scored: lower the "
                               "learning rate or check the loss weights")

    # ----------------------------------------------------------------- loop
    def run(self, progress=None) -> LoopState:
        st, m, cfg = self.state, self.method, self.cfg
        if st.finished:
            return st
        max_iters = self.iteration_budget
        sums: dict[str, torch.Tensor] = {}
        count = 0
        self.progress = progress
        if progress:
            progress.start(total=self.total_iterations, completed=min(self.total_iterations, st.iteration),
                           epochs=self.total_epochs, epoch=st.epoch)
        means: dict[str, float] = {}
        t0, it0 = time.perf_counter(), st.iteration
        m.train()
        while st.epoch <= self.total_epochs:
            epoch = st.epoch
            m.on_epoch_start(epoch)
            self.ds.set_epoch(epoch, jitter=m.data_jitter(epoch))
            batches = epoch_batches(self.ds, self.order(epoch), self.batch_size, self.n_batches, st.batch_pos,
                                    num_workers=cfg.train.num_workers, pin_memory=m.device.type == "cuda")
            for batch in batches:
                with self.amp.train_step():
                    losses = m.train_step(to_memory_format(batch, cfg.train))
                self.check_losses(losses, st.iteration + 1, epoch)
                st.batch_pos += 1
                st.iteration += 1
                if m.schedule_unit == "iteration":
                    for s in self.schedulers.values():
                        s.step()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                if st.iteration % cfg.train.log_every == 0 or st.batch_pos == self.n_batches:
                    means = {k: float(v) / count for k, v in sums.items()}
                    sums, count = {}, 0
                    self._log_metrics({f"train/{k}": v for k, v in means.items()}, step=st.iteration)
                if progress:  # every iteration: the bar's speed and ETA stay current on slow runs
                    progress.update(completed=st.iteration, epoch=epoch, losses=means)
                if st.iteration - it0 == ETA_AFTER_ITERATIONS:
                    self._log_eta(time.perf_counter() - t0, st.iteration - it0)
                if cfg.train.save_every and st.iteration % cfg.train.save_every == 0 and st.batch_pos < self.n_batches:
                    self.save()
                if max_iters and st.iteration >= max_iters:
                    break
            batches.close()
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
        return st

    def _log_eta(self, seconds: float, done: int) -> None:
        """Once per run, after a few iterations: the measured time per iteration and what the rest will take,
        when that is long (a paper-sized run on a CPU: the hint names the CPU-sized preset)."""
        per_iter = seconds / max(1, done)
        remaining = per_iter * (self.total_iterations - self.state.iteration)
        if remaining < ETA_REPORT_SECONDS:
            return
        hint = ""
        if self.method.device.type == "cpu" and self.cfg.preset == "paper":
            hint = ("; on a CPU, --preset smoke is the CPU-sized run (minutes), Ctrl-C stops this one "
                    "(--resume continues it)")
        log.warning("%s/%s/seed%d: %.2f s/iteration measured; %d iterations left, about %s%s", self.cfg.method,
                    self.cfg.dataset, self.cfg.seed, per_iter, self.total_iterations - self.state.iteration,
                    format_duration(remaining), hint)

    def _lr(self) -> float:
        first = next(iter(self.method.optimizers.values()))
        return float(first.param_groups[0]["lr"])

    def evaluate_epoch(self, epoch: int) -> None:
        """Quick held-out evaluation + sample grid; updates best.pt; calls on_eval (may raise TrialPruned)."""
        cfg, st, m = self.cfg, self.state, self.method
        metric = cfg.train.select_metric
        self.check_weights()
        progress = self.progress
        if progress:
            n = len(self.evaluator.data.sources) if cfg.train.eval_n <= 0 else cfg.train.eval_n
            progress.phase(f"evaluating epoch {epoch}: {metric} on {min(n, len(self.evaluator.data.sources))} "
                           "test images")
        with preserved_rng():
            m.eval()
            try:
                scores = self.evaluator.quick(m, cfg.train.eval_n, metric)
                grid_path = self.run_dir / "samples" / f"epoch_{epoch:04d}.png"
                save_png(self.evaluator.sample_grid(m), grid_path)
            finally:
                m.train()
        self.tracker.log_image(grid_path, key="samples", step=epoch)  # the run page's slider over epochs
        entry = {"epoch": epoch, "iteration": st.iteration, **scores}
        st.history = [h for h in st.history if h["epoch"] != epoch] + [entry]
        if progress:
            progress.phase(None)
        if scores:
            self._log_metrics(tracking_metrics(scores, "eval"), step=epoch)
        if metric in scores:
            value = scores[metric]
            if is_better(metric, value, st.best["value"] if st.best else None):
                st.best = {"epoch": epoch, "value": value}
                self.save_best(epoch, value)
        else:
            # No selectable metric (e.g. no Inception weights): "best" is the latest evaluated epoch.
            st.best = {"epoch": epoch, "value": float("nan")}
            self.save_best(epoch, float("nan"))
        atomic_write_json(self.run_dir / "history.json", st.history)
        if self.on_eval is not None and metric in scores:
            self.on_eval(epoch, scores)


def origin(cfg: RunConfig) -> dict[str, str]:
    """What a checkpoint records of the run that wrote it: the method and the config hash."""
    return {"method_name": cfg.method, "config_hash": cfg.config_hash()}


def check_origin(ckpt: dict[str, Any], cfg: RunConfig, path: Path, also_accept: tuple[str, ...] = ()) -> None:
    """CheckpointError (one line) when `ckpt` was written by another method or under other settings
    (`also_accept`: config hashes it may also carry, e.g. the settings before a resume changed eval.*)."""
    saved_method, saved_hash = ckpt.get("method_name"), ckpt.get("config_hash")
    if saved_method is not None and saved_method != cfg.method:
        raise CheckpointError(f"{path} is a checkpoint of {saved_method}, not of this {cfg.method} run; refusing to "
                              "resume from it: remove it to start over, or use that method's run folder")
    if saved_hash != cfg.config_hash() and saved_hash not in also_accept:
        raise CheckpointError(f"{path} was written under other settings (config hash {saved_hash}, this run "
                              f"{cfg.config_hash()}; e.g. another size, schedule or loss weight); refusing to resume "
                              "from it: resume with the settings it was written with, or start a new run")


def load_last_nets_into(method, run_dir: Path) -> None:
    """Load the nets of last.pt into `method` (after a failed best.pt load)."""
    ckpt = load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt", map_location=method.device, require=("method",))
    method.load_state_dict(ckpt["method"])


def load_best_into(method, run_dir: Path, cfg: RunConfig | None = None, origin_hashes: tuple[str, ...] = ()) -> int:
    """Load best.pt's nets into `method` (refused when `cfg` is given and best.pt is not its own); returns its epoch.

    CheckpointError when unusable; a file that does not fit may have been loaded in part, so reload the last
    weights (`load_last_nets_into`) before using the method."""
    path = Path(run_dir) / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(path, map_location=method.device, require=("method", "epoch"))
    if cfg is not None:
        check_origin(ckpt, cfg, path, origin_hashes)
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
