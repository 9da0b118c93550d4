"""exp66: Appendix 6.6 (Figure 5), VAEs trained on 1000 MNIST points."""
