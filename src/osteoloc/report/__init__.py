"""The report stage: `stats` (tests and intervals), `tables` (every table), `ablation` (the study arms'
comparison), `replication` (two runs' verdicts compared), `style` (figure style), `figures` (paper A's
figures) and the `figure_*` modules.
"""
