"""Which CUT-family configurations get wrong generator gradients from torch's instance norm at batch size 1?

On torch 2.14.1 (CPU), `F.instance_norm`'s backward is wrong at batch size 1 when its incoming gradient is
channels_last-strided (tests/test_nets.py checks it against finite differences). bench's instance norms make
that gradient contiguous first (methods/nets/init.py). The official code has plain `nn.InstanceNorm2d`, so it
computes what bench computes with the workaround switched off and the official second encoder pass
(`nce_reuse_source_features=false`). This script takes one step of each of the 10 CUT-family configurations both
ways from the same weights, seed and batch, and compares the generator's gradients:

    python benchmarks/instance_norm_gradients.py [--size 64] [--ngf 16]

A relative difference at float32 round-off (~1e-6) means the configuration is unaffected; the affected ones
differ by O(1). A side-by-side comparison with the official code on such a torch must patch the official side.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses

import torch

import methods
from methods.nets import init as nets_init

CONFIGS = ("cut", "fastcut", "dclgan", "simdcl", "qsattn_global", "qsattn_local", "qsattn_local_global", "enco",
           "fsesim", "lsesim")


@contextlib.contextmanager
def plain_instance_norm():
    """The official arithmetic: instance norms receive the incoming gradient as it is."""
    saved = nets_init.contiguous_grad
    nets_init.contiguous_grad = lambda t: t
    try:
        yield
    finally:
        nets_init.contiguous_grad = saved


def generator_gradients(name: str, size: int, ngf: int, official: bool) -> dict[str, torch.Tensor]:
    """netG's (netG_A/netG_B's) gradients of one step, captured just before the G optimiser steps."""
    over = {"crop_size": size, "load_size": size, "ngf": ngf, "ndf": ngf}
    if name in ("fsesim", "lsesim"):
        over["allow_random_vgg"] = True
    if "nce_reuse_source_features" in {f.name for f in dataclasses.fields(methods.get(name).Config)}:
        over["nce_reuse_source_features"] = not official
    torch.manual_seed(0)
    m = methods.build(name, preset="smoke", **over)
    g = torch.Generator().manual_seed(1)
    batch = {key: torch.rand(1, 3, size, size, generator=g) * 2 - 1 for key in ("A", "B", "A_aug", "B_aug")}
    m.setup(batch)
    grads: dict[str, torch.Tensor] = {}
    opt = m.optimizers["G"]
    step = opt.step

    def capture(*a, **k):
        for key, net in m.nets.items():
            if key.startswith("netG"):
                for n, p in net.named_parameters():
                    if p.grad is not None:
                        grads[f"{key}.{n}"] = p.grad.detach().clone()
        return step(*a, **k)

    opt.step = capture
    torch.manual_seed(2)
    with plain_instance_norm() if official else contextlib.nullcontext():
        m.train_step(batch)
    return grads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--ngf", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CPU, batch 1, {args.size} px, ngf {args.ngf}")
    print(f"{'configuration':22s} {'max |g_official - g_bench| / max |g_bench|':>44s}  affected")
    for name in CONFIGS:
        ours = generator_gradients(name, args.size, args.ngf, official=False)
        theirs = generator_gradients(name, args.size, args.ngf, official=True)
        scale = max(v.abs().max().item() for v in ours.values())
        diff = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
        rel = diff / scale
        print(f"{name:22s} {rel:44.2e}  {'yes' if rel > 1e-3 else 'no'}")


if __name__ == "__main__":
    main()
