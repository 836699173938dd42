"""Names the workflow needs at parse time, kept free of third-party imports.

The Snakefile reads them with only Snakemake installed (conda users, foreign interpreters):
the DCLS variant list drives the ``dcls.grid`` schema enum (a test checks it), the
``{variant}`` wildcard constraint and the layer conversion.
"""

from __future__ import annotations

DCLS_VARIANTS: tuple[str, ...] = ("dense", "dilated", "dcls_v0", "dcls_gauss", "dcls_frozen")

# Model names that resolve to the offline packages (common/assets.py) without any hub access.
OFFLINE_MODEL_ALIASES: tuple[str, ...] = (
    "minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2",
)
# their transformers model_type, and the model types whose attention adds a relative position bias
OFFLINE_MODEL_TYPES: dict[str, str] = {name: ("mpnet" if "mpnet" in name else "bert") for name in OFFLINE_MODEL_ALIASES}
POSITION_BIAS_MODEL_TYPES: tuple[str, ...] = ("mpnet", "t5", "mt5", "umt5")
# slugs and mteb model names of the variants that leave the relative position bias unscaled
BIAS_UNSCALED_SUFFIX = "-biasunscaled"
