"""A linear binary classifier on [1, 8, 8] with known distances, and a constant one, shared by the oracle and
attack tests."""

from __future__ import annotations

import torch
from torch import nn


class Linear(nn.Module):
    """Class 1 where w.x + b > 0, with ||w|| = 1 so that w.x + b is the signed l2 distance to the boundary.

    ``w`` is drawn from ``seed`` unless given; ``rows`` counts every input row the model has seen.
    """

    def __init__(self, seed: int = 0, w: torch.Tensor | None = None, b: float = 0.0) -> None:
        super().__init__()
        if w is None:
            w = torch.randn(64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        w = w.flatten().double()
        self.w = (w / w.norm()).float()
        self.b = b
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        s = self.signed_distance(x)
        return torch.stack((-s, s), dim=1)

    def signed_distance(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + self.b


def images_at(model: Linear, distances: list[float]) -> torch.Tensor:
    """Points of class 0 at the given l2 distances from the hyperplane (b = 0), near the centre 0.5."""
    base = torch.full((64,), 0.5)
    base -= (base @ model.w) * model.w
    return torch.stack([base - d * model.w for d in distances]).view(-1, 1, 8, 8)


class Constant(nn.Module):
    """Always class 0: nothing is ever adversarial for label 0; ``rows`` counts every input row seen."""

    def __init__(self) -> None:
        super().__init__()
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return torch.stack((torch.ones(len(x)), torch.zeros(len(x))), dim=1)


class RowwiseLinear(Linear):
    """:class:`Linear` computed row by row (a product and a sum per row, no matrix product): a row's answer
    does not depend on the other rows of the batch, to the last bit, as an attack's batched run needs to equal
    its image-by-image runs."""

    def signed_distance(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) * self.w).sum(1) + self.b


class Rowwise(nn.Module):
    """A K-class linear model on [1, 8, 8] computed row by row: logits x.W + c, W [64, K] drawn from ``seed``."""

    def __init__(self, classes: int, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(64, classes, generator=gen) / 8
        self.bias = torch.randn(classes, generator=gen) / 4
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return (x.flatten(1).unsqueeze(2) * self.weight).sum(1) + self.bias
