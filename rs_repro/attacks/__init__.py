"""Decision-based attacks under randomized smoothing: one query oracle, one bisection, HSJA, SurFree, RayS."""

from .bisection import Bisection, bisect, bisect_segment
from .hsja import hsja
from .oracle import AttackResult, Oracle
from .rays import rays
from .surfree import surfree

__all__ = ["AttackResult", "Bisection", "Oracle", "bisect", "bisect_segment", "hsja", "rays", "surfree"]
