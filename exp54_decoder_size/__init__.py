"""Section 5.4 / Table 5: FFG VAEs with decoders of 0, 2 and 4 hidden layers."""
