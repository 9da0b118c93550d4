"""Inference: the estimators (IWAE, AIS with HMC, BDMC), local q* and the gaps with their
certificates."""
