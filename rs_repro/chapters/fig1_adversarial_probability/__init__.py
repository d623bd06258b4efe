"""Fig. 1 of the paper: the probability that g_{sigma,n} is wrong along a ray past the boundary of f."""
