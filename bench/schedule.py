"""Whether a run trains the official schedule in full, and if not, what cut it.

A run's schedule is cut when it trains less than its method's `paper` recipe on the whole dataset: a shorter
schedule (a preset such as `smoke`, or `--set n_epochs=... / iterations=...`), `data.max_train` (fewer items
per epoch), or `train.max_iters` (stops early). The runner logs the cuts, records them as MLflow params
(`schedule.*`) and the tag `bench.schedule_cut`, and `bench table` footnotes the cells of such runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: MLflow tag holding the cuts of a run ("; "-joined); absent when the run trains its full schedule.
TAG_SCHEDULE_CUT = "bench.schedule_cut"


@dataclass(frozen=True)
class Schedule:
    """What a run trains, against what its recipe asks for."""

    iterations: int
    epochs: int
    items_per_epoch: int
    unit: str
    length: int
    recipe_length: int
    cuts: list[str] = field(default_factory=list)

    @property
    def cut(self) -> str:
        """The cuts in one line ('' when the schedule is the recipe's in full)."""
        return "; ".join(self.cuts)

    def params(self) -> dict[str, Any]:
        """MLflow params of the schedule (`schedule.cut` is 'no' for a full schedule)."""
        return {"schedule.iterations": self.iterations, "schedule.epochs": self.epochs,
                "schedule.items_per_epoch": self.items_per_epoch,
                f"schedule.recipe_{self.unit}": self.recipe_length, "schedule.cut": self.cut or "no"}

    def describe(self) -> str:
        """One line for the log."""
        text = (f"{self.iterations} iterations ({self.epochs} epochs of {self.items_per_epoch} items; "
                f"the recipe: {self.recipe_length} {self.unit})")
        return text + (f"; CUT: {self.cut}" if self.cuts else "")


def plan(cfg, trainer) -> Schedule:
    """The schedule `trainer` will run for `cfg` (a RunConfig), with every way it falls short of the recipe."""
    import methods

    cls = methods.get(cfg.method)
    length, unit = cls.schedule_length(cfg.method_cfg)
    recipe_length, _ = cls.schedule_length(cls.make_config("paper", dataset=cfg.dataset))
    cuts = []
    if length < recipe_length:
        preset_length, _ = cls.schedule_length(cls.make_config(cfg.preset, dataset=cfg.dataset))
        why = f"preset {cfg.preset}" if cfg.preset != "paper" and preset_length == length else "--set"
        cuts.append(f"{why}: {length} of the recipe's {recipe_length} {unit}")
    full_items = getattr(trainer.ds, "full_len", trainer.n_items)
    if cfg.data.max_train and trainer.n_items < full_items:
        cuts.append(f"data.max_train={cfg.data.max_train}: {trainer.n_items} of {full_items} training items per epoch")
    if cfg.train.max_iters and cfg.train.max_iters < trainer.planned_iterations:
        cuts.append(f"train.max_iters={cfg.train.max_iters}: stops at {trainer.total_iterations} of "
                    f"{trainer.planned_iterations} iterations")
    return Schedule(iterations=trainer.total_iterations, epochs=trainer.total_epochs,
                    items_per_epoch=trainer.n_batches * trainer.batch_size, unit=unit, length=length,
                    recipe_length=recipe_length, cuts=cuts)
