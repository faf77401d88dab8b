"""Printers: one per backend, built on sympy's, driven by tables."""
