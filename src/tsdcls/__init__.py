"""Reproduction pipeline for TempScale (length-induced embedding collapse) and DCLS."""

__version__ = "0.1.0"
