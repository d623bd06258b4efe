"""Fig. 4 of the paper: Cohen et al.'s certified accuracy against the l2 radius."""
