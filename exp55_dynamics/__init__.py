"""§5.5: gaps over training on train and validation for five models."""
