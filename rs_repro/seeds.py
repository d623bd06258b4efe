"""Seeds derived from a recorded master seed, so that every unit of work has its own reproducible stream.

A chapter records one ``seed``; each unit of work (an image, a configuration) draws from a generator
seeded by :func:`derive_seed` of that seed and the unit's identifiers. Results then do not depend on the
order in which units are computed, on batching, or on whether a run was interrupted and resumed.
"""

from __future__ import annotations

import hashlib

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
