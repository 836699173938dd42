"""The hub-cache layout writer now lives in the package (the rehearsal uses it too)."""

from tsdcls.common.hub_layout import DATASETS, LEMB_CONFIGS, LEMB_LENGTHS, model_files, write_repo

__all__ = ["DATASETS", "LEMB_CONFIGS", "LEMB_LENGTHS", "model_files", "write_repo"]
