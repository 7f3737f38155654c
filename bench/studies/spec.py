"""Study specs: `studies/*.yaml` -> a validated, frozen `StudySpec` (what to sweep, how to score and search).

A spec names a method and dataset, a preset, fixed overrides, a search space, the objective (metric(s),
direction, mean over seeds), the sampler (grid / tpe / random, seeded), the pruner (none / median / hyperband
on the metric evaluated during training) and the storage. `bench.studies.run` turns it into an Optuna study.

Search-space parameters:
- `categorical` (choices), `int` / `float` (low, high, optional step, log), `variant` (named override sets:
  the rows of an ablation table, e.g. QS-Attn's A-H);
- the names `method` and `dataset` choose the run's method / dataset instead of overriding a field;
- `when: {param: value | [values]}` makes a parameter conditional on earlier ones;
- `grid: [values]` gives the values a grid sampler enumerates for an int/float parameter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from bench.errors import ConfigError, UsageError, closest
from bench.metrics import catalog
from bench.seeding import MAX_SEED
from bench.studies.objectives import get_objective, is_objective

PARAM_KINDS = ("categorical", "int", "float", "variant")
SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("minimize", "maximize")
SELECTS = ("last", "best")
# Names in the search space that pick the run itself rather than a config field.
RUN_KEYS = ("method", "dataset")
# Metrics the training loop can score at evaluation epochs (`Evaluator.quick`), hence prune on.
EVAL_TIME_METRICS = catalog.names(eval_time=True)


Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Param:
    """One search-space dimension."""

    name: str
    kind: str
    choices: tuple[Scalar, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    #: variant name -> overrides it applies (kind == "variant").
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ((other param, allowed values), ...): the parameter exists only when all hold.
    when: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()
    #: Values a grid sampler enumerates (defaults: choices, or the int range with its step).
    grid: tuple[Scalar, ...] | None = None

    def active(self, params: Mapping[str, Any]) -> bool:
        """True when this parameter's conditions hold for the already-chosen `params`."""
        return all(name in params and params[name] in allowed for name, allowed in self.when)

    def grid_values(self) -> tuple[Scalar, ...]:
        """Every value this parameter takes in a grid study."""
        if self.grid is not None:
            return self.grid
        if self.kind == "categorical":
            return self.choices
        if self.kind == "variant":
            return tuple(self.variants)
        if self.kind == "int":
            step = int(self.step or 1)
            return tuple(range(int(self.low), int(self.high) + 1, step))
        raise AssertionError("validated: float params of grid studies have `grid` values")

    def suggest(self, trial) -> Scalar:
        """Ask an Optuna trial for this parameter's value."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "variant":
            return trial.suggest_categorical(self.name, list(self.variants))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)


@dataclass(frozen=True)
class ObjectiveSpec:
    """What a trial returns: metric(s) averaged over seeds, each with its direction."""

    metrics: tuple[str, ...] = ("fid",)
    directions: tuple[str, ...] = ("minimize",)
    #: Score of the "last" weights or of the "best" checkpoint (selected during training, as the papers did).
    select: str = "last"

    @property
    def metric(self) -> str:
        """The first (pruning / table-sorting) metric."""
        return self.metrics[0]


@dataclass(frozen=True)
class SamplerSpec:
    kind: str = "tpe"
    seed: int = 0
    #: TPE: random trials before the model kicks in (None = Optuna's default).
    n_startup_trials: int | None = None
    #: TPE: model parameters jointly (with `group`, handles conditional spaces).
    multivariate: bool = True


@dataclass(frozen=True)
class PrunerSpec:
    kind: str = "none"
    n_startup_trials: int = 5
    #: Median: evaluations before pruning is considered (FID is noisy early on).
    n_warmup_steps: int = 0
    interval_steps: int = 1
    min_resource: int = 1
    max_resource: int | str = "auto"
    reduction_factor: int = 3
    #: Wrap in PatientPruner: prune only after this many evaluations without improvement (None = off).
    patience: int | None = None


@dataclass(frozen=True)
class StudySpec:
    """A validated study spec. `with_options` applies command-line choices (preset, dataset, ...)."""

    name: str
    method: str
    dataset: str
    path: str = ""
    description: str = ""
    #: Which paper table this reproduces (free text, shown in tables).
    paper: str = ""
    #: (paper id, table) of its rows in results/published/*.csv, shown beside the reproduced numbers.
    published: tuple[str, str] | None = None
    preset: str = "paper"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: preset -> extra fixed overrides for that preset (e.g. evaluate every epoch in `smoke`).
    preset_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: `--set` values from the command line: applied after the spec's and the preset's overrides.
    cli_overrides: Mapping[str, Any] = field(default_factory=dict)
    search_space: tuple[Param, ...] = ()
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    seeds: tuple[int, ...] = (0,)
    #: Total trials in the study (None = the grid size for grid studies).
    n_trials: int | None = None
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    #: Optuna storage URL or journal file; None = results/studies/<name>.journal.
    storage: str | None = None
    #: Parameter sets to run first (e.g. the paper defaults), for tpe/random samplers.
    enqueue: tuple[Mapping[str, Any], ...] = ()
    #: Seconds between liveness heartbeats of a running trial, and age after which it counts as dead.
    heartbeat_interval: int = 30
    grace_period: int = 180
    #: How often a trial whose worker died is retried.
    max_retry: int = 3
    #: The study stops after this many failed trials in a row (with the first one's error).
    max_failed_trials: int = 3
    #: Plot layout: x-axis parameter and grouping parameter (defaults: first numeric / first other).
    plot_x: str | None = None
    plot_group: str | None = None

    # ------------------------------------------------------------------ derived
    @property
    def study_name(self) -> str:
        """The Optuna study name: spec name, dataset(s) and preset, so smoke and paper studies never mix."""
        return f"{self.name}.{'+'.join(self.datasets)}.{self.preset}"

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset the study can run on (from a `dataset` parameter, else the spec's)."""
        p = self.param("dataset")
        return tuple(str(c) for c in p.choices) if p is not None else (self.dataset,)

    @property
    def is_grid(self) -> bool:
        return self.sampler.kind == "grid"

    @property
    def multi_objective(self) -> bool:
        return len(self.objective.metrics) > 1

    def param(self, name: str) -> Param | None:
        return next((p for p in self.search_space if p.name == name), None)

    def fixed_overrides(self) -> dict[str, Any]:
        """Spec overrides, then this preset's, then `--set`; the objective metric selects the best checkpoint."""
        out: dict[str, Any] = {}
        if self.objective.metric in EVAL_TIME_METRICS:
            out["train.select_metric"] = self.objective.metric
        out.update(self.overrides)
        out.update(self.preset_overrides.get(self.preset, {}))
        out.update(self.cli_overrides)
        return out

    def grid_points(self) -> list[dict[str, Scalar]]:
        """Every parameter combination of a grid study, in spec order (conditional parameters respected)."""
        return list(_enumerate(self.search_space, {}))

    def grid_size(self) -> int:
        return len(self.grid_points())

    def total_trials(self) -> int:
        """The study's trial budget."""
        if self.n_trials is not None:
            return self.n_trials
        return self.grid_size()

    def resolve(self, params: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """Trial params -> (method, dataset, overrides) of its runs."""
        method, dataset = self.method, self.dataset
        overrides = self.fixed_overrides()
        for p in self.search_space:
            if p.name not in params:
                continue
            value = params[p.name]
            if p.kind == "variant":
                changes = dict(p.variants[value])
            else:
                changes = {p.name: value}
            method = str(changes.pop("method", method))
            dataset = str(changes.pop("dataset", dataset))
            overrides.update(changes)
        return method, dataset, overrides

    def suggest(self, trial) -> dict[str, Scalar]:
        """Ask `trial` for every active parameter, in spec order."""
        params: dict[str, Scalar] = {}
        for p in self.search_space:
            if p.active(params):
                params[p.name] = p.suggest(trial)
        return params

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs of this spec the same study (budget, storage and paths excluded)."""
        d = dataclasses.asdict(self)
        for key in ("path", "description", "paper", "published", "n_trials", "storage", "heartbeat_interval", "grace_period",
                    "max_retry", "max_failed_trials", "plot_x", "plot_group", "enqueue"):
            d.pop(key)
        d["preset_overrides"] = d["preset_overrides"].get(self.preset, {})
        return json.loads(json.dumps(d, sort_keys=True, default=str))

    def fingerprint_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.fingerprint(), sort_keys=True).encode()).hexdigest()[:16]

    def with_options(self, *, preset: str | None = None, dataset: str | None = None,
                     overrides: Mapping[str, Any] | None = None, seeds: tuple[int, ...] | None = None,
                     n_trials: int | None = None, storage: str | None = None) -> "StudySpec":
        """This spec with command-line choices applied (validated like the file)."""
        changes: dict[str, Any] = {}
        if preset is not None:
            changes["preset"] = preset
        if dataset is not None:
            changes["dataset"] = dataset
            swept = self.param("dataset")
            if swept is not None:
                # A study over several datasets runs on just this one (e.g. `--dataset toy` for a smoke run).
                changes["search_space"] = tuple(dataclasses.replace(p, choices=(dataset,), grid=None)
                                                if p is swept else p for p in self.search_space)
        if overrides:
            changes["cli_overrides"] = {**self.cli_overrides, **overrides}
        if seeds is not None:
            changes["seeds"] = _parse_seeds(list(seeds), self.path or "<spec>")
        if n_trials is not None:
            changes["n_trials"] = _opt_int(n_trials, self.path or "<spec>", "n_trials", minimum=1)
        if storage is not None:
            changes["storage"] = storage
        spec = dataclasses.replace(self, **changes)
        _validate_spec(spec, self.path or "<spec>")
        return spec


def _enumerate(params: tuple[Param, ...], chosen: dict[str, Scalar]) -> Iterator[dict[str, Scalar]]:
    if not params:
        yield dict(chosen)
        return
    head, rest = params[0], params[1:]
    if not head.active(chosen):
        yield from _enumerate(rest, chosen)
        return
    for value in head.grid_values():
        yield from _enumerate(rest, {**chosen, head.name: value})


# ---------------------------------------------------------------------------------------------- loading
_TOP_KEYS = ("name", "description", "paper", "published", "method", "dataset", "preset", "overrides", "preset_overrides",
             "search_space", "objective", "seeds", "n_trials", "sampler", "pruner", "storage", "enqueue",
             "heartbeat_interval", "grace_period", "max_retry", "max_failed_trials", "plot")
_PARAM_KEYS = ("type", "choices", "low", "high", "step", "log", "variants", "when", "grid")
_SAMPLER_KEYS = ("type", "seed", "n_startup_trials", "multivariate")
_PRUNER_KEYS = ("type", "n_startup_trials", "n_warmup_steps", "interval_steps", "min_resource", "max_resource",
                "reduction_factor", "patience")
_OBJECTIVE_KEYS = ("metric", "metrics", "direction", "directions", "select")


def find_spec(name_or_path: str | Path, studies_dir: str | Path = "studies") -> Path:
    """A spec path: an existing file, or `<studies_dir>/<name>.yaml` (also next to the package)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    # `studies/cut_lr_tpe.yaml` typed outside the repository means the spec bench ships under that name.
    stem = path.stem if path.suffix in (".yaml", ".yml") else str(name_or_path)
    candidates = [Path(studies_dir) / f"{stem}.yaml",
                  Path(__file__).resolve().parents[2] / "studies" / f"{stem}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    known = sorted({p.stem for d in (Path(studies_dir), candidates[1].parent) if d.is_dir() for p in d.glob("*.yaml")})
    raise ConfigError(f"study spec {str(name_or_path)!r} not found{closest(stem, known)}; give a "
                      f"YAML path or one of: {', '.join(known) or '(no specs in ./studies)'}")


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study spec YAML file (ConfigError naming the file and key on any problem)."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read study spec {path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start} is {exc.object[exc.start]:#04x}); a study "
                          "spec is a YAML text file like studies/cut_nce.yaml") from None
    except yaml.YAMLError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ConfigError(f"{path}: not valid YAML ({first.strip()}); fix the file (see studies/*.yaml)") from None
    return parse_spec(raw, str(path))


def parse_spec(raw: Any, where: str = "<spec>") -> StudySpec:
    """Validate a spec given as a mapping (the parsed YAML)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a study spec is a mapping of keys (name, method, dataset, search_space, ...)")
    _check_keys(raw, _TOP_KEYS, where, "")
    for key in ("name", "method", "dataset"):
        if key not in raw and not (key in RUN_KEYS and key in (raw.get("search_space") or {})):
            raise ConfigError(f"{where}: missing required key {key!r}")
    name = _str(raw.get("name"), where, "name")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{where}: name {name!r} may contain only letters, digits, '_' and '-'")
    space = raw.get("search_space") or {}
    if not isinstance(space, Mapping):
        raise ConfigError(f"{where}: search_space must map parameter names to their definitions")
    params = tuple(_parse_param(str(k), v, where) for k, v in space.items())
    method = raw.get("method")
    if method is None:
        method = _first_choice(params, "method")
    dataset = raw.get("dataset")
    if dataset is None:
        dataset = _first_choice(params, "dataset")
    plot = raw.get("plot") or {}
    if not isinstance(plot, Mapping):
        raise ConfigError(f"{where}: plot must be a mapping with x and/or group")
    _check_keys(plot, ("x", "group"), where, "plot.")
    spec = StudySpec(
        name=name, method=_str(method, where, "method"), dataset=_str(dataset, where, "dataset"), path=where,
        description=str(raw.get("description") or "").strip(), paper=str(raw.get("paper") or "").strip(),
        published=_parse_published(raw.get("published"), where),
        preset=_str(raw.get("preset", "paper"), where, "preset"),
        overrides=_mapping(raw.get("overrides"), where, "overrides"),
        preset_overrides=_parse_preset_overrides(raw.get("preset_overrides"), where),
        search_space=params,
        objective=_parse_objective(raw.get("objective", {}), where),
        seeds=_parse_seeds(raw.get("seeds", [0]), where),
        n_trials=_opt_int(raw.get("n_trials"), where, "n_trials", minimum=1),
        sampler=_parse_sampler(raw.get("sampler", {}), where),
        pruner=_parse_pruner(raw.get("pruner", {}), where),
        storage=None if raw.get("storage") is None else _str(raw.get("storage"), where, "storage"),
        enqueue=tuple(_mapping(e, where, f"enqueue[{i}]") for i, e in enumerate(raw.get("enqueue") or [])),
        heartbeat_interval=_opt_int(raw.get("heartbeat_interval", 30), where, "heartbeat_interval", minimum=1),
        grace_period=_opt_int(raw.get("grace_period", 180), where, "grace_period", minimum=1),
        max_retry=_opt_int(raw.get("max_retry", 3), where, "max_retry", minimum=0),
        max_failed_trials=_opt_int(raw.get("max_failed_trials", 3), where, "max_failed_trials", minimum=1),
        plot_x=plot.get("x"), plot_group=plot.get("group"),
    )
    _validate_spec(spec, where)
    return spec


def _validate_spec(spec: StudySpec, where: str) -> None:
    names = [p.name for p in spec.search_space]
    seen: set[str] = set()
    for p in spec.search_space:
        for dep, _ in p.when:
            if dep not in seen:
                raise ConfigError(f"{where}: search_space.{p.name}.when refers to {dep!r}, which must be a parameter "
                                  f"defined before it (defined before: {sorted(seen) or 'none'})")
        seen.add(p.name)
        if p.name == "seed":
            raise ConfigError(f"{where}: search_space.seed: seeds are not searched; list them under `seeds:` "
                              "(the objective is the mean over them)")
        if p.name in RUN_KEYS and p.kind != "categorical":
            raise ConfigError(f"{where}: search_space.{p.name} must be categorical (a list of {p.name} names)")
    if spec.is_grid:
        if not spec.search_space:
            raise ConfigError(f"{where}: a grid study needs a search_space")
        for p in spec.search_space:
            if p.kind == "float" and p.grid is None:
                raise ConfigError(f"{where}: search_space.{p.name}: a float parameter of a grid study needs "
                                  "`grid: [values]`")
        if spec.enqueue:
            raise ConfigError(f"{where}: enqueue is for tpe/random samplers (a grid study runs every point anyway)")
    elif spec.n_trials is None:
        raise ConfigError(f"{where}: n_trials is required for a {spec.sampler.kind} sampler")
    if spec.multi_objective and spec.pruner.kind != "none":
        raise ConfigError(f"{where}: pruner.type must be none for a multi-objective study (Optuna cannot prune "
                          f"on {len(spec.objective.metrics)} objectives)")
    if spec.pruner.kind != "none" and spec.objective.metric not in EVAL_TIME_METRICS:
        raise ConfigError(f"{where}: pruner.type={spec.pruner.kind} needs an objective scored during training "
                          f"({', '.join(EVAL_TIME_METRICS)}); {spec.objective.metric!r} is only scored at the end "
                          "(use pruner: none)")
    for i, params in enumerate(spec.enqueue):
        for key in params:
            if key not in names:
                raise ConfigError(f"{where}: enqueue[{i}].{key} is not a search_space parameter{closest(key, names)}")
    for attr in ("plot_x", "plot_group"):
        value = getattr(spec, attr)
        if value is not None and value not in names:
            raise ConfigError(f"{where}: plot.{attr[5:]}={value!r} is not a search_space parameter{closest(value, names)}")
    if is_objective(spec.method):
        try:
            get_objective(spec.method)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _parse_param(name: str, raw: Any, where: str) -> Param:
    key = f"search_space.{name}"
    if isinstance(raw, list):  # shorthand: a list of choices
        raw = {"type": "categorical", "choices": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: {key} must be a mapping with `type` (one of {', '.join(PARAM_KINDS)}) "
                          "or a list of choices")
    _check_keys(raw, _PARAM_KEYS, where, key + ".")
    kind = raw.get("type", "categorical")
    if kind not in PARAM_KINDS:
        raise ConfigError(f"{where}: {key}.type={kind!r} is not one of {list(PARAM_KINDS)}{closest(str(kind), PARAM_KINDS)}")
    when = _parse_when(raw.get("when"), where, key)
    grid = raw.get("grid")
    if grid is not None:
        if not isinstance(grid, list) or not grid:
            raise ConfigError(f"{where}: {key}.grid must be a non-empty list of values")
        grid = tuple(_scalar(v, where, f"{key}.grid") for v in grid)
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: {key}.choices must be a non-empty list")
        choices = tuple(_scalar(v, where, f"{key}.choices") for v in choices)
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}: {key}.choices has duplicates: {list(choices)}")
        return Param(name, kind, choices=choices, when=when, grid=grid)
    if kind == "variant":
        variants = raw.get("variants")
        if not isinstance(variants, Mapping) or not variants:
            raise ConfigError(f"{where}: {key}.variants must map variant names to their overrides, "
                              "e.g. {A: {qs_select: entropy}, B: {qs_select: random}}")
        parsed = {str(k): _mapping(v, where, f"{key}.variants.{k}") for k, v in variants.items()}
        return Param(name, kind, variants=parsed, when=when, grid=grid)
    for bound in ("low", "high"):
        if not isinstance(raw.get(bound), (int, float)) or isinstance(raw.get(bound), bool):
            raise ConfigError(f"{where}: {key}.{bound} must be a number (an {kind} parameter needs low and high)")
    low, high, step, log = raw["low"], raw["high"], raw.get("step"), raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: {key}.log must be true or false")
    if low > high:
        raise ConfigError(f"{where}: {key}: low ({low}) must be <= high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: {key}: a log-scale parameter needs low > 0 (got {low})")
    if step is not None and (not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(f"{where}: {key}.step must be a positive number")
    if log and step is not None:
        raise ConfigError(f"{where}: {key}: step and log cannot be combined (Optuna does not support it)")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise ConfigError(f"{where}: {key}: an int parameter needs integer low/high/step")
    if kind == "float" and not all(math.isfinite(v) for v in (low, high)):
        raise ConfigError(f"{where}: {key}: low and high must be finite")
    return Param(name, kind, low=low, high=high, step=step, log=log, when=when, grid=grid)


def _parse_when(raw: Any, where: str, key: str) -> tuple[tuple[str, tuple[Scalar, ...]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: {key}.when must map earlier parameters to a value or a list of values")
    out = []
    for dep, allowed in raw.items():
        values = allowed if isinstance(allowed, list) else [allowed]
        out.append((str(dep), tuple(_scalar(v, where, f"{key}.when.{dep}") for v in values)))
    return tuple(out)


def _section(raw: Any, where: str, name: str, shorthand: str, keys, example: str) -> Mapping[str, Any]:
    """A spec section as a mapping with known keys; a plain string is shorthand for `{shorthand: value}`."""
    if isinstance(raw, str):
        raw = {shorthand: raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: {name} must be a mapping, e.g. {example}")
    _check_keys(raw, keys, where, f"{name}.")
    return raw


def _parse_objective(raw: Any, where: str) -> ObjectiveSpec:
    raw = _section(raw, where, "objective", "metric", _OBJECTIVE_KEYS, "{metric: fid, direction: minimize}")
    metrics = raw.get("metrics", raw.get("metric", "fid"))
    metrics = tuple(str(m) for m in (metrics if isinstance(metrics, list) else [metrics]))
    if not metrics:
        raise ConfigError(f"{where}: objective.metric must name at least one metric")
    for m in metrics:
        try:
            catalog.get(m)
        except UsageError as exc:
            raise ConfigError(f"{where}: objective.metric: {exc}") from None
    directions = raw.get("directions", raw.get("direction"))
    if directions is None:
        directions = [catalog.get(m).direction for m in metrics]
    directions = tuple(str(d) for d in (directions if isinstance(directions, list) else [directions]))
    if len(directions) != len(metrics):
        raise ConfigError(f"{where}: objective has {len(metrics)} metric(s) but {len(directions)} direction(s)")
    for d in directions:
        if d not in DIRECTIONS:
            raise ConfigError(f"{where}: objective.direction={d!r} is not one of {list(DIRECTIONS)}")
    select = raw.get("select", "last")
    if select not in SELECTS:
        raise ConfigError(f"{where}: objective.select={select!r} is not one of {list(SELECTS)}")
    return ObjectiveSpec(metrics, directions, select)


def _parse_sampler(raw: Any, where: str) -> SamplerSpec:
    raw = _section(raw, where, "sampler", "type", _SAMPLER_KEYS, "{type: tpe, seed: 0}")
    kind = raw.get("type", "tpe")
    if kind not in SAMPLERS:
        raise ConfigError(f"{where}: sampler.type={kind!r} is not one of {list(SAMPLERS)}{closest(str(kind), SAMPLERS)}")
    multivariate = raw.get("multivariate", True)
    if not isinstance(multivariate, bool):
        raise ConfigError(f"{where}: sampler.multivariate must be true or false")
    return SamplerSpec(kind, _opt_int(raw.get("seed", 0), where, "sampler.seed", minimum=0, maximum=MAX_SEED),
                       _opt_int(raw.get("n_startup_trials"), where, "sampler.n_startup_trials", minimum=0),
                       multivariate)


def _parse_pruner(raw: Any, where: str) -> PrunerSpec:
    raw = _section({} if raw is None else raw, where, "pruner", "type", _PRUNER_KEYS,
                   "{type: median, n_warmup_steps: 2}")
    kind = raw.get("type", "none")
    if kind not in PRUNERS:
        raise ConfigError(f"{where}: pruner.type={kind!r} is not one of {list(PRUNERS)}{closest(str(kind), PRUNERS)}")
    max_resource = raw.get("max_resource", "auto")
    if max_resource != "auto":
        max_resource = _opt_int(max_resource, where, "pruner.max_resource", minimum=1)
    d = PrunerSpec()
    return PrunerSpec(
        kind,
        _opt_int(raw.get("n_startup_trials", d.n_startup_trials), where, "pruner.n_startup_trials", minimum=0),
        _opt_int(raw.get("n_warmup_steps", d.n_warmup_steps), where, "pruner.n_warmup_steps", minimum=0),
        _opt_int(raw.get("interval_steps", d.interval_steps), where, "pruner.interval_steps", minimum=1),
        _opt_int(raw.get("min_resource", d.min_resource), where, "pruner.min_resource", minimum=1),
        max_resource,
        _opt_int(raw.get("reduction_factor", d.reduction_factor), where, "pruner.reduction_factor", minimum=2),
        _opt_int(raw.get("patience"), where, "pruner.patience", minimum=0),
    )


def _parse_published(raw: Any, where: str) -> tuple[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) != {"paper", "table"}:
        raise ConfigError(f"{where}: published must be {{paper: <id in results/published>, table: <table>}}")
    return str(raw["paper"]), str(raw["table"])


def _parse_preset_overrides(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: preset_overrides must map preset names to overrides, e.g. "
                          "{smoke: {train.eval_every: 1}}")
    return {str(k): _mapping(v, where, f"preset_overrides.{k}") for k, v in raw.items()}


def _parse_seeds(raw: Any, where: str) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 1 <= raw <= 1000:
            raise ConfigError(f"{where}: seeds: a count must be from 1 to 1000 (or give a list of seeds)")
        return tuple(range(raw))
    if not isinstance(raw, (list, tuple)) or not raw or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in raw):
        raise ConfigError(f"{where}: seeds must be a count or a non-empty list of integers from 0 to {MAX_SEED}, "
                          f"got {list(raw) if isinstance(raw, tuple) else raw!r}")
    raw = list(raw)
    if len(set(raw)) != len(raw):
        raise ConfigError(f"{where}: seeds has duplicates: {raw}")
    return tuple(raw)


def _first_choice(params: tuple[Param, ...], name: str) -> Any:
    p = next((p for p in params if p.name == name), None)
    return p.choices[0] if p is not None and p.choices else None


def _check_keys(raw: Mapping, allowed: tuple[str, ...], where: str, prefix: str) -> None:
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {prefix}{key}{closest(str(key), allowed)}; "
                              f"valid: {', '.join(allowed)}")


def _str(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _opt_int(value: Any, where: str, key: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: {key} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where}: {key} must be <= {maximum}, got {value}")
    return value


def _mapping(value: Any, where: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {key} must be a mapping of option: value")
    out = {}
    for k, v in value.items():
        if isinstance(v, (list, tuple)):  # tuple options (nce_layers) as the CLI writes them: "0,4,8"
            v = ",".join(map(str, v))
        out[str(k)] = _scalar(v, where, f"{key}.{k}")
    return out


def _scalar(value: Any, where: str, key: str) -> Scalar:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ConfigError(f"{where}: {key}: {value!r} must be a number, string or boolean (write lists as \"0,4,8\")")

