"""DCLS stage: learnable-spacing convolutions (layers, timm conversion), training and evaluation.

Importing the package registers the DCLS timm models (``convnext_tiny_dcls`` ...).
"""

from tsdcls.dcls.convert import (
    VARIANTS,
    ConversionReport,
    GridDilatedConv2d,
    LayerChange,
    convert_model,
    count_parameters,
    dilated_grid,
)
from tsdcls.dcls.fold import fold_dcls
from tsdcls.dcls.kernels import construct_kernel, dcls_conv, fft_conv
from tsdcls.dcls.layers import (
    Dcls1d,
    Dcls2d,
    clamp_dcls_parameters,
    dcls_modules,
    new_positions,
    position_parameters,
)

__all__ = [
    "VARIANTS",
    "ConversionReport",
    "Dcls1d",
    "Dcls2d",
    "GridDilatedConv2d",
    "LayerChange",
    "clamp_dcls_parameters",
    "construct_kernel",
    "convert_model",
    "count_parameters",
    "dcls_conv",
    "dcls_modules",
    "dilated_grid",
    "fft_conv",
    "fold_dcls",
    "new_positions",
    "position_parameters",
]
