"""Rule `figure_grid`: Figure A1, validation loss per epoch for every grid point of the prior's search."""

from osteoloc.report.stages import figure_grid_stage
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: figure_grid_stage(  # noqa: F821
    smk.input.selection, smk.input.histories, smk.output.figureA1))
