"""Refitting the encoder on images with flipped pixels (Mattei & Frellsen 2018): IWAE on the
refit set A and an independent set B."""
