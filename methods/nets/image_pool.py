"""Image history buffer for discriminator updates (Shrivastava et al. 2017), as CycleGAN uses it.

Randomness comes from torch's global RNG (seeded and checkpointed by the harness), and the stored images
are part of the checkpoint, so a resumed run draws exactly what an uninterrupted one would.
Follows pytorch-CycleGAN-and-pix2pix@00d5574:util/image_pool.py.
"""

from __future__ import annotations

import torch


class ImagePool:
    """Return the new image until full; then with p=0.5 swap it for a stored one."""

    def __init__(self, pool_size: int = 50) -> None:
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(()).item() > 0.5:
                idx = int(torch.randint(0, self.pool_size, ()).item())
                out.append(self.images[idx].clone())
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        return {"pool_size": self.pool_size, "images": [t.cpu() for t in self.images]}

    def load_state_dict(self, state: dict) -> None:
        self.pool_size = state["pool_size"]
        self.images = list(state["images"])
