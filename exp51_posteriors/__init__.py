"""Section 5.1 / Figure 2: true and approximate posteriors of a VAE with a 2-D latent space."""
