"""Fig. 2 of the paper: a slice of input space labelled by f and by g_{sigma,n}."""
