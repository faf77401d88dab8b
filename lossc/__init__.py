"""lossc: a compiler for loss functions."""
__version__ = "0.1.0"
