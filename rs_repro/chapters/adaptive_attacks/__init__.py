"""The ``adaptive_attacks`` chapter: attackers that know the defence is random, and noise inside the network."""
