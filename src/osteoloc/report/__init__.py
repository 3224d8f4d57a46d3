"""The report stage: `stats` (tests and intervals), `tables` (every table), `ablation` (the study arms'
comparison), `style` (figure style), `figures` (paper A's figures) and the `figure_*` modules.
"""
