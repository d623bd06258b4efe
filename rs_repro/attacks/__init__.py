"""Decision-based attacks under randomized smoothing: one query oracle, one bisection, HSJA, SurFree, RayS,
PopSkipJump (beyond the paper), and the verification of eq. (4) with fresh votes."""

from rs_repro.attacks.bisection import Bisection, bisect, bisect_segment
from rs_repro.attacks.hsja import hsja
from rs_repro.attacks.minimal import MinimalAdversarial, minimal_l2
from rs_repro.attacks.oracle import NOISE_SEEDINGS, Answer, AttackResult, Oracle, smoothed_oracle
from rs_repro.attacks.popskipjump import popskipjump
from rs_repro.attacks.rays import rays
from rs_repro.attacks.surfree import surfree
from rs_repro.attacks.verification import Candidates, Pushed, push_candidates, push_to_level, verify

__all__ = ["NOISE_SEEDINGS", "Answer", "AttackResult", "Bisection", "Candidates", "MinimalAdversarial", "Oracle",
           "Pushed", "bisect", "bisect_segment", "hsja", "minimal_l2", "popskipjump", "push_candidates", "push_to_level",
           "rays", "smoothed_oracle", "surfree", "verify"]
