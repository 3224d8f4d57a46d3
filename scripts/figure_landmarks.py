"""Rule `figure_landmarks`: Figure 1 (a right and a left hip with contour and target groups)."""

import json
import logging

from osteoloc.figures.landmarks import figure_landmarks

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
rows = figure_landmarks(snakemake.input.study, snakemake.output.png,  # noqa: F821
                        rows=json.loads(snakemake.params.rows))  # noqa: F821
logging.info("Figure 1 shows HDF5 rows %s", rows.tolist())
