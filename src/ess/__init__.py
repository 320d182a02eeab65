"""ess: a Python re-implementation and extension of AuriQ Essentia."""

__version__ = "0.1.0"
# The Essentia release whose command line and output formats we reproduce.
ESSENTIA_COMPAT = "3.2.0.0"
