"""§5.3: a frozen decoder and small encoders per family, isolating the variational family."""
