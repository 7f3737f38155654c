"""CUT family: the keys' encoder features taken from the fakes' generator pass equal a second encoder pass."""

import pytest
import torch

import methods


def make_batch(size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"A": (torch.rand(1, 3, size, size, generator=g) * 2 - 1).double(),
            "B": (torch.rand(1, 3, size, size, generator=g) * 2 - 1).double()}


def stepped(name, reuse, **overrides):
    """Gradients of one float64 training step (Adam's step leaves them in .grad), and how many times netG ran.

    Gradients, not updated parameters: Adam's first step is ~lr·sign(g), so the exactly-zero gradients
    (conv biases before instance norm) would compare their rounding noise.
    """
    torch.manual_seed(0)
    m = methods.build(name, preset="smoke", nce_reuse_source_features=reuse, **overrides)
    batch = make_batch(m.cfg.crop_size)
    m.setup({k: v.float() for k, v in batch.items()})
    for net in m.nets.values():  # after setup: F's MLPs exist then; the optimisers keep the same Parameters
        net.double()
    calls = []
    m.nets["netG"].register_forward_hook(lambda *_: calls.append(1))
    torch.manual_seed(1)
    m.train_step(make_batch(m.cfg.crop_size, seed=1))
    grads = {f"{k}.{n}": p.grad for k, net in m.nets.items() for n, p in net.named_parameters()}
    return grads, len(calls)


@pytest.mark.parametrize("name", ["cut", "qsattn_global", "qsattn_local", "qsattn_local_global"])
def test_reused_source_features_give_the_official_update(name):
    """QS-Attn's keys carry gradient through the attention, so this checks gradients, not only values."""
    official, official_calls = stepped(name, reuse=False)
    reused, reused_calls = stepped(name, reuse=True)
    assert (official_calls, reused_calls) == (5, 3)  # fakes + (query, key) x 2 vs fakes + query x 2
    assert official.keys() == reused.keys()
    for k in official:
        torch.testing.assert_close(reused[k], official[k], rtol=1e-7, atol=1e-12, msg=k)


def test_source_is_encoded_again_when_the_pass_saw_other_images():
    m = methods.build("fastcut", preset="smoke")
    assert m.source_features_reusable(flipped=False) and not m.source_features_reusable(flipped=True)
    assert not methods.build("cut", preset="smoke", norm="batch").source_features_reusable(flipped=False)
    assert not methods.build("cut", preset="smoke", nce_reuse_source_features=False).source_features_reusable(False)
