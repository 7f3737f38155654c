"""`bench import`: load an official generator checkpoint into our nets (strict key and shape check).

Official repositories save `net.state_dict()` per network as `<epoch>_net_<name>.pth` (e.g. `latest_net_G_A.pth`);
pretrained releases often hold just the generator (`horse2zebra.pth`). Keys match ours by construction
(methods use the official attribute and module names), so loading is strict; the only tolerated difference is
the InstanceNorm running statistics that PyTorch < 0.4 wrote (the official loader drops them too).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from bench.errors import CheckpointError, UsageError
from bench.weights import load_state_dict

log = logging.getLogger(__name__)


def read_official_state(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from an official .pth (bench.weights: weights_only, `state_dict` and `module.` removed)."""
    return load_state_dict(path)


def guess_net(method, path: Path, net: str | None) -> str:
    """The net a file holds: explicit, from `_net_<X>.pth`, else the method's first generator."""
    if net:
        if net not in method.nets:
            raise UsageError(f"--net {net!r}: {method.name} has nets {', '.join(method.nets)}")
        return net
    m = re.search(r"_net_([A-Za-z0-9_]+)\.pth$", path.name)
    if m and f"net{m.group(1)}" in method.nets:
        return f"net{m.group(1)}"
    return method.generator_keys()[0]


def load_official_into(method, path: Path, net: str | None = None) -> str:
    """Load an official checkpoint into `method.nets[net]`; returns the net name. Strict keys and shapes."""
    name = guess_net(method, path, net)
    module = method.nets[name]
    sd = read_official_state(path)
    own = module.state_dict()
    stale = [k for k in sd if k not in own and k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for k in stale:
        sd.pop(k)
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(f"{label}: {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if keys)
        raise CheckpointError(f"{path} does not fit {method.name}.{name} with this config ({detail}); "
                              "check --preset/--set (e.g. ngf, n_blocks, norm) match the checkpoint")
    module.load_state_dict(sd)
    return name


def import_folder(out: Path, dataset: str | None, method: str, stem: str) -> Path:
    """`<out>/<dataset>/<method>/<stem>`, or `<stem>-2`, `-3`... when an earlier import is there (never overwritten)."""
    base = Path(out) / (dataset or "no-dataset") / method
    target, n = base / stem, 2
    while target.exists():
        target, n = base / f"{stem}-{n}", n + 1
    return target


def import_checkpoint(method_name: str, path: Path, *, net: str | None, out: Path, dataset: str | None,
                      data_root: str | None, direction: str | None, preset: str, overrides: list[str],
                      device: str, inception_weights: str | None, tracking_uri: str | None = None) -> Path:
    """Import an official generator; with `dataset`, also translate and score its test split and track the scores
    in MLflow (tag bench.kind=import), so `bench table` shows the official checkpoint beside the runs."""
    import methods
    from bench.checkpoint import atomic_write_json, save_checkpoint
    from bench.config import parse_set
    from bench.runner import build_run_config, preflight, resolve_device

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
    name = load_official_into(method, path, net)
    target = import_folder(Path(out), dataset, method_name, path.stem)
    target.mkdir(parents=True)
    save_checkpoint(target / "imported.pt", {"method": {"nets": {name: method.nets[name].state_dict()}},
                                             "source": str(path), "net": name})
    log.info("loaded %s into %s.%s (%d parameters); wrote %s", path, method_name, name,
             sum(p.numel() for p in method.nets[name].parameters()), target)
    if cfg is not None:
        from bench.evaluation import Evaluator

        method.eval()
        scores = Evaluator(cfg, target, dev).full(method, "imported")
        atomic_write_json(target / "metrics.json", {"method": method_name, "dataset": dataset, "source": str(path),
                                                    "imported": scores})
        for k, v in scores["metrics"].items():
            log.info("%s = %s", k, v.get("value") if v.get("value") is not None else f"unavailable ({v.get('unavailable')})")
        track_import(cfg, target, path, name, scores)
    return target


def track_import(cfg, target: Path, source: Path, net: str, scores: dict) -> str | None:
    """One finished MLflow run for an imported checkpoint: its scores as both `last/` and `best/` (one checkpoint)."""
    import json

    from bench.runner import _flatten_results, git_commit, write_tracking_record
    from bench.tracking import (TAG_DATASET, TAG_DIRECTION, TAG_GIT_COMMIT, TAG_KIND, TAG_METHOD, TAG_PRESET,
                                TAG_PROTOCOL_PREFIX, TAG_RUN_DIR, TAG_SEED, Tracker)

    tags = {TAG_METHOD: cfg.method, TAG_DATASET: cfg.dataset, TAG_SEED: "0", TAG_KIND: "import",
            TAG_DIRECTION: cfg.data.direction or "default", TAG_PRESET: cfg.preset, TAG_GIT_COMMIT: git_commit(),
            TAG_RUN_DIR: str(target.resolve()), "bench.import.source": str(Path(source).resolve()),
            "bench.import.net": net}
    tracker = Tracker.start(tracking_uri=cfg.tracking_uri, experiment=cfg.dataset,
                            run_name=f"{cfg.method}/imported/{target.name}", tags=tags, params=cfg.flat_params())
    results = scores["metrics"]
    tracker.log_metrics({**_flatten_results("last", results), **_flatten_results("best", results)}, step=0)
    for metric, r in results.items():
        if r.get("fingerprint"):
            tracker.set_tags({f"{TAG_PROTOCOL_PREFIX}{metric}": json.dumps(r["fingerprint"], sort_keys=True,
                                                                           default=str)[:5000]})
        if r.get("unavailable"):
            tracker.set_tags({f"bench.unavailable.{metric}": r["unavailable"][:5000]})
    tracker.log_artifact(target / "metrics.json")
    tracker.finish("FINISHED")
    write_tracking_record(target, tracker)
    log.info("tracked as MLflow run %s (bench.kind=import) in experiment %r", tracker.run_id, cfg.dataset)
    return tracker.run_id
