"""The ``fig5_attacks`` chapter: Fig. 5 of the paper, decision-based attacks against smoothed classifiers."""
