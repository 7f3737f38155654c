"""Learning-rate multipliers as pure functions of the step (testable without an optimiser)."""

from __future__ import annotations


def linear_decay(epoch: int, n_epochs: int, n_epochs_decay: int, warmup_epochs: int = 0, *,
                 at_epoch_start: bool = False) -> float:
    """CycleGAN/CUT 'linear' policy with EnCo's optional warm-up.

    `epoch` is 0-based (LambdaLR's counter; bench's loop steps the schedulers at the end of each epoch, as
    CUT's and BicycleGAN's train.py do). Constant for `n_epochs`, then linear towards 0 over
    `n_epochs_decay`: ``1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)``.
    `at_epoch_start`: the official loop steps the schedulers at the *start* of every epoch
    (pytorch-CycleGAN-and-pix2pix@00d5574:train.py), so epoch `epoch` trains with the multiplier of
    `epoch + 1`: the decay starts one epoch earlier and the last epoch trains with lr 0.
    Follows pytorch-CycleGAN-and-pix2pix@00d5574:models/networks.py (epoch_count=1);
    warm-up follows EnCo-pytorch@0d404a7:models/networks.py: ``(epoch + 1) / warmup_epochs``.
    """
    if at_epoch_start:
        epoch += 1
    if warmup_epochs and epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)


def iteration_linear_decay(it: int, total_iters: int, decay_start: int) -> float:
    """NICE-GAN style: constant until `decay_start`, then linearly to 0 at `total_iters`."""
    if it < decay_start:
        return 1.0
    return max(0.0, 1.0 - (it - decay_start) / max(1, total_iters - decay_start))
