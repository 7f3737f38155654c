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


def import_checkpoint(method_name: str, path: Path, *, net: str | None, out: Path, dataset: str | None,
                      data_root: str | None, direction: str | None, preset: str, overrides: list[str],
                      device: str, inception_weights: str | None) -> Path:
    """Import an official generator; with `dataset`, also translate and score its test split."""
    import methods
    from bench.checkpoint import atomic_write_json, save_checkpoint
    from bench.config import parse_set
    from bench.runner import build_run_config, resolve_device

    over = parse_set(overrides)
    if dataset:
        cfg = build_run_config(method_name, dataset, 0, preset, over, data_root=data_root, direction=direction,
                               out=str(out), device=device, inception_weights=inception_weights)
        method_cfg = cfg.method_cfg
    else:
        cfg, method_cfg = None, methods.get(method_name).make_config(preset, over)
    dev = resolve_device(device)
    method = methods.get(method_name)(method_cfg, device=dev)
    name = load_official_into(method, path, net)
    target = Path(out) / method_name / path.stem
    target.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target / "imported.pt", {"method": {"nets": {name: method.nets[name].state_dict()}},
                                             "source": str(path), "net": name})
    log.info("loaded %s into %s.%s (%d parameters)", path, method_name, name,
             sum(p.numel() for p in method.nets[name].parameters()))
    if cfg is not None:
        from bench.evaluation import Evaluator

        method.eval()
        scores = Evaluator(cfg, target, dev).full(method, "imported")
        atomic_write_json(target / "metrics.json", {"method": method_name, "dataset": dataset, "source": str(path),
                                                    "imported": scores})
        for k, v in scores["metrics"].items():
            log.info("%s = %s", k, v.get("value") if v.get("value") is not None else f"unavailable ({v.get('unavailable')})")
    return target
