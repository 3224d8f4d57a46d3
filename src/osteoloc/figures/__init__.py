"""Figures of the study; every figure is saved as PNG and PDF through `save_figure`."""
