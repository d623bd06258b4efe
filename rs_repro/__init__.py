"""rs_repro: executable companion of Maho, Furon and Le Merrer, *Randomized Smoothing under Attack:
How Good is it in Practice?* (ICASSP 2022)."""

__version__ = "0.1.0"
