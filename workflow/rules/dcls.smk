# DCLS stage: learnable-spacing convolutions, training, evaluation and the ablation grid.

TARGETS["dcls"] = []
