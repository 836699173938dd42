"""Theory stage: numerical checks of the low-pass attenuation bound of self-attention."""
