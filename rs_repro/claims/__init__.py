"""The claims: the judging kernel, the judges of the paper's claims and of those beyond it, the scorecard."""
