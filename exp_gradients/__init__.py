"""Encoder/decoder gradient norms logged during the exp55 runs."""
