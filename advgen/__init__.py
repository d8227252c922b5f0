"""advgen: GAN-style adversarial text generation for e-commerce."""
__version__ = "0.1.0"
