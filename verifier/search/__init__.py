"""Search: falsification (sampling, PGD) and branch and bound."""
