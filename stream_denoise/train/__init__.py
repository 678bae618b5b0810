"""Training the AttentiveGAN: losses, datasets, the trainer and evaluation."""
