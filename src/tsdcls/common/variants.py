"""Names the workflow needs at parse time, kept free of third-party imports.

The Snakefile reads them with only Snakemake installed (conda users, foreign interpreters):
the DCLS variant list drives the ``dcls.grid`` schema enum (a test checks it), the
``{variant}`` wildcard constraint and the layer conversion.
"""

from __future__ import annotations

DCLS_VARIANTS: tuple[str, ...] = ("dense", "dilated", "dcls_v0", "dcls_gauss", "dcls_frozen")
