"""Fig. 3 of the paper: a binary search against the smoothed classifier g_{sigma,n}."""
