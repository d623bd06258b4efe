"""Seeds derived from a recorded master seed, so that every unit of work has its own reproducible stream.

A chapter records one ``seed``; each unit of work (an image, a configuration) draws from a generator
seeded by :func:`derive_seed` of that seed and the unit's identifiers. Results then do not depend on the
order in which units are computed, on batching, or on whether a run was interrupted and resumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from rs_repro import checks

#: torch's CPU generator keeps only the low 32 bits of a seed, so derived seeds stay below 2**32.
SEED_SPACE = 2**32


def derive_seed(seed: int, *keys: object) -> int:
    """A seed in ``[0, 2**32)`` determined by ``seed`` and the ``repr`` of each key (sha256-based)."""
    text = "\x1f".join([str(checks.integer("seed", seed)), *map(repr, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") % SEED_SPACE


def generator(seed: int, *keys: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``derive_seed(seed, *keys)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))


class ImageGenerators:
    """One generator per image, so that what an attack draws for an image does not depend on the batch.

    Image b's generator is seeded by ``derive_seed(seed, *scope, keys[b])``, ``keys[b]`` its identity (its
    test-split index). :meth:`draw` gives each image its own draws in the order they are asked.

    Parameters
    ----------
    seed : int
        The master seed.
    scope : tuple
        What the draws are for (e.g. ``("hsja",)``), part of every image's seed.
    keys : sequence of int
        The B images' identities.
    device : str or torch.device
        Where the generators and their draws live.
    """

    def __init__(self, seed: int, scope: tuple[object, ...], keys: Sequence[int],
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.generators = [generator(seed, *scope, int(k), device=self.device) for k in keys]

    def draw(self, images: torch.Tensor, shape: torch.Size, law: str, dtype: torch.dtype) -> torch.Tensor:
        """One draw of ``shape`` for each image index in ``images`` [m] (int64, 0 to B - 1), of shape
        ``[m, *shape]``, ``law`` ``"uniform"`` (on [0, 1)) or ``"normal"`` (standard). A run of consecutive
        rows of one image is drawn in one call of that image's generator."""
        sample = {"uniform": torch.rand, "normal": torch.randn}[law]
        index = images.cpu().tolist()
        parts, start = [], 0
        while start < len(index):
            stop = start + 1
            while stop < len(index) and index[stop] == index[start]:
                stop += 1
            parts.append(sample((stop - start, *shape), generator=self.generators[index[start]],
                                device=self.device, dtype=dtype))
            start = stop
        return torch.cat(parts) if parts else torch.empty((0, *shape), device=self.device, dtype=dtype)
