"""`bench import`: load official checkpoint files into our nets (strict key and shape check), optionally score.

Official repositories save their nets in three layouts, all read with `weights_only=True`:
- one net's `state_dict()` per file, `<epoch>_net_<name>.pth` (CycleGAN, pix2pix, CUT family, BicycleGAN;
  pretrained releases often hold just the generator, `horse2zebra.pth`);
- NICE-GAN: one `<dataset>_params_latest.pt` (or `_params_<step>.pt`) dict with gen2B, gen2A, disA, disB, both
  optimisers and start_iter;
- MUNIT: `gen_<iter>.pt` = {'a': gen_a, 'b': gen_b} and `dis_<iter>.pt` = {'a': dis_a, 'b': dis_b}.
The method splits its own multi-net files (`Method.official_entries`). Keys match ours by construction (methods
use the official attribute and module names), so loading is strict; tolerated extras, dropped: the InstanceNorm
running statistics PyTorch < 0.4 wrote (the official loader drops them too) and thop's `total_ops` /
`total_params` bookkeeping buffers, which NICE-GAN's `thop.profile` calls leave in disA and gen2B.
A score needs every net its translation uses (`Method.scoring_keys`): with fewer imported, `bench import`
refuses in one line naming the missing nets, instead of scoring nets at random init. An import is written to
`<out>/<dataset>/<method>/<first file's stem>/` (never over an earlier one) and, when scored, tracked in MLflow
with `bench.kind=import`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping

import torch

from bench.errors import CheckpointError, UsageError
from bench.weights import as_state_dict, load_state_dict, load_weights_file

log = logging.getLogger(__name__)

#: Buffers that are bookkeeping, not weights: old InstanceNorm statistics and thop's profiling counters.
_STALE_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_THOP = ("total_ops", "total_params")


def read_official_state(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from an official .pth (bench.weights: weights_only, `state_dict` and `module.` removed)."""
    return load_state_dict(path)


def guess_net(method, path: Path, net: str | None) -> str:
    """The net a single-net file holds: explicit, from `_net_<X>.pth`, else the method's first generator."""
    if net:
        if net not in method.nets:
            raise UsageError(f"--net {net!r}: {method.name} has nets {', '.join(method.nets)}")
        return net
    m = re.search(r"_net_([A-Za-z0-9_]+)\.pth$", path.name)
    if m and f"net{m.group(1)}" in method.nets:
        return f"net{m.group(1)}"
    return method.generator_keys()[0]


def load_state_into(method, name: str, sd: Mapping[str, torch.Tensor], path: Path) -> None:
    """Strictly load `sd` into `method.nets[name]`, dropping only the known bookkeeping extras."""
    module = method.nets[name]
    own = module.state_dict()
    sd = dict(sd)
    for k in [k for k in sd if k not in own and (k.endswith(_STALE_SUFFIXES) or k.rsplit(".", 1)[-1] in _THOP)]:
        sd.pop(k)
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(f"{label}: {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if keys)
        raise CheckpointError(f"{path} does not fit {method.name}.{name} with this config ({detail}); "
                              "check --preset/--set (e.g. ngf, n_blocks, norm, light) match the checkpoint")
    module.load_state_dict(sd)


def load_official_file(method, path: Path, net: str | None = None) -> list[str]:
    """Load one official file (any of the three layouts) into `method`; returns the nets it filled."""
    raw = load_weights_file(path)
    entries = method.official_entries(path, raw) if isinstance(raw, dict) else None
    if entries is None:
        name = guess_net(method, path, net)
        load_state_into(method, name, as_state_dict(raw, path), path)
        return [name]
    if net:
        raise UsageError(f"--net {net}: {path.name} holds {', '.join(entries)}; --net applies to single-net files")
    for name, sd in entries.items():
        if name not in method.nets:
            raise CheckpointError(f"{path}: entry {name!r} is not a net of {method.name} ({', '.join(method.nets)})")
        load_state_into(method, name, as_state_dict(sd, f"{path} [{name}]"), path)
    return list(entries)


def load_official_into(method, path: Path, net: str | None = None) -> str:
    """Load an official single-net checkpoint into `method.nets[net]`; returns the net name (strict)."""
    return load_official_file(method, path, net)[0]


def check_scorable(method, loaded: list[str], paths: list[Path], direction: str = "AtoB") -> None:
    """UsageError naming the nets a score of `direction` needs that no imported file held."""
    need = method.scoring_keys(direction)
    missing = [k for k in need if k not in loaded]
    if missing:
        files = ", ".join(p.name for p in paths)
        raise UsageError(f"cannot score {method.name}: {direction} needs {', '.join(need)} but {files} held "
                         f"{', '.join(loaded) or 'nothing'}; also import {', '.join(missing)} (pass its file too)")


def import_folder(out: Path, dataset: str | None, method: str, stem: str) -> Path:
    """`<out>/<dataset>/<method>/<stem>`, or `<stem>-2`, `-3`... when an earlier import is there (never overwritten)."""
    base = Path(out) / (dataset or "no-dataset") / method
    target, n = base / stem, 2
    while target.exists():
        target, n = base / f"{stem}-{n}", n + 1
    return target


def import_checkpoint(method_name: str, path: Path | list[Path], *, net: str | None, out: Path, dataset: str | None,
                      data_root: str | None, direction: str | None, preset: str, overrides: list[str],
                      device: str, inception_weights: str | None, tracking_uri: str | None = None) -> Path:
    """Import official checkpoint file(s); with `dataset`, also translate and score its test split and track the
    scores in MLflow (tag bench.kind=import), so `bench table` shows the official checkpoint beside the runs."""
    import methods
    from bench.checkpoint import atomic_write_json, save_checkpoint
    from bench.config import parse_set
    from bench.runner import build_run_config, preflight, resolve_device

    paths = [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
    if net and len(paths) > 1:
        raise UsageError("--net names the net of one file; with several files each is matched by its name/layout")
    over = parse_set(overrides)
    if dataset:
        cfg = build_run_config(method_name, dataset, 0, preset, over, data_root=data_root, direction=direction,
                               out=str(out), device=device, inception_weights=inception_weights,
                               tracking_uri=tracking_uri)
        method_cfg = cfg.method_cfg
        preflight(cfg)  # the dataset is there before anything is written
    else:
        cfg, method_cfg = None, methods.get(method_name).make_config(preset, over)
    dev = resolve_device(device)
    method = methods.get(method_name)(method_cfg, device=dev)
    loaded: list[str] = []
    for p in paths:
        loaded += [n for n in load_official_file(method, p, net) if n not in loaded]
    if cfg is not None:
        check_scorable(method, loaded, paths)  # before anything is written
    target = import_folder(Path(out), dataset, method_name, paths[0].stem)
    target.mkdir(parents=True)
    save_checkpoint(target / "imported.pt", {"method": {"nets": {n: method.nets[n].state_dict() for n in loaded}},
                                             "source": [str(p) for p in paths], "nets": loaded})
    log.info("loaded %s into %s (%s; %d parameters); wrote %s", ", ".join(map(str, paths)), method_name,
             ", ".join(loaded), sum(p.numel() for n in loaded for p in method.nets[n].parameters()), target)
    if cfg is not None:
        from bench.evaluation import Evaluator

        method.eval()
        scores = Evaluator(cfg, target, dev).full(method, "imported")
        atomic_write_json(target / "metrics.json", {"method": method_name, "dataset": dataset,
                                                    "source": [str(p) for p in paths], "nets": loaded,
                                                    "imported": scores})
        for k, v in scores["metrics"].items():
            log.info("%s = %s", k, v.get("value") if v.get("value") is not None else f"unavailable ({v.get('unavailable')})")
        track_import(cfg, target, paths, ", ".join(loaded), scores)
    return target


def track_import(cfg, target: Path, source: Path | list[Path], net: str, scores: dict) -> str | None:
    """One finished MLflow run for an imported checkpoint: its scores as both `last/` and `best/` (one checkpoint)."""
    from bench.runner import _flatten_results, git_commit, write_tracking_record
    from bench.tracking import (TAG_DATASET, TAG_DIRECTION, TAG_GIT_COMMIT, TAG_KIND, TAG_METHOD, TAG_PRESET,
                                TAG_RUN_DIR, TAG_SEED, Tracker, protocol_tags)

    tags = {TAG_METHOD: cfg.method, TAG_DATASET: cfg.dataset, TAG_SEED: "0", TAG_KIND: "import",
            TAG_DIRECTION: cfg.data.direction or "default", TAG_PRESET: cfg.preset, TAG_GIT_COMMIT: git_commit(),
            TAG_RUN_DIR: str(target.resolve()),
            "bench.import.source": ", ".join(str(Path(p).resolve()) for p in
                                             (source if isinstance(source, (list, tuple)) else [source])),
            "bench.import.net": net}
    tracker = Tracker.start(tracking_uri=cfg.tracking_uri, experiment=cfg.dataset,
                            run_name=f"{cfg.method}/imported/{target.name}", tags=tags, params=cfg.flat_params())
    results = scores["metrics"]
    tracker.log_metrics({**_flatten_results("last", results), **_flatten_results("best", results)}, step=0)
    for metric, r in results.items():
        if r.get("fingerprint"):
            tracker.set_tags(protocol_tags(metric, r["fingerprint"]))  # short flat tags, like benchmark runs
        if r.get("unavailable"):
            tracker.set_tags({f"bench.unavailable.{metric}": r["unavailable"][:5000]})
    tracker.log_artifact(target / "metrics.json")
    tracker.finish("FINISHED")
    write_tracking_record(target, tracker)
    log.info("tracked as MLflow run %s (bench.kind=import) in experiment %r", tracker.run_id, cfg.dataset)
    return tracker.run_id
