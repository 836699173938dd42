# TempScale stage: temperature-scaled attention, length collapse, mteb tasks and ablations.

TARGETS["tempscale"] = []
