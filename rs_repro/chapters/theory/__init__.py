"""Section 3 of the paper: eq. (2), (3), (5) and (6) checked against exact laws and Monte Carlo."""
