"""The explain stage: `cam` (Grad-CAM of all four targets from one pass), `metrics` (localisation
metrics of a map), `stages` (the explain job: maps, predictions and metrics of one trained run).
"""
