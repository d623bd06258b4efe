"""Claim 9 of the paper: HSJA's normal estimates at the boundary of g_sigma, with and without smoothing."""
