"""Decision-based attacks under randomized smoothing: one query oracle, one bisection, HSJA, SurFree, RayS."""

from .bisection import Bisection, bisect, bisect_segment
from .hsja import hsja
from .minimal import MinimalAdversarial, minimal_l2
from .oracle import AttackResult, Oracle
from .rays import rays
from .surfree import surfree

__all__ = ["AttackResult", "Bisection", "MinimalAdversarial", "Oracle", "bisect", "bisect_segment", "hsja", "minimal_l2",
           "rays", "surfree"]
