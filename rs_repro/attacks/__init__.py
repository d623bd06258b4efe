"""Decision-based attacks under randomized smoothing: one query oracle, one bisection, HSJA, SurFree, RayS,
PopSkipJump (beyond the paper), and the verification of eq. (4) with fresh votes."""

from .bisection import Bisection, bisect, bisect_segment
from .hsja import hsja
from .minimal import MinimalAdversarial, minimal_l2
from .oracle import NOISE_SEEDINGS, Answer, AttackResult, Oracle, smoothed_oracle
from .popskipjump import popskipjump
from .rays import rays
from .surfree import surfree
from .verification import Candidates, Pushed, push_candidates, push_to_level, verify

__all__ = ["NOISE_SEEDINGS", "Answer", "AttackResult", "Bisection", "Candidates", "MinimalAdversarial", "Oracle",
           "Pushed", "bisect", "bisect_segment", "hsja", "minimal_l2", "popskipjump", "push_candidates", "push_to_level",
           "rays", "smoothed_oracle", "surfree", "verify"]
