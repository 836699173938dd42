"""Pieces every stage shares: config, provenance, atomic I/O, seeding, offline assets.

Stages (theory, tempscale, dcls, figures) import from here and never from each other.
"""
