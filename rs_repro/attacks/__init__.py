"""Decision-based attacks under randomized smoothing: one query oracle, one bisection, HSJA, SurFree, RayS."""

from .bisection import Bisection, bisect, bisect_segment
from .oracle import Oracle

__all__ = ["Bisection", "Oracle", "bisect", "bisect_segment"]
