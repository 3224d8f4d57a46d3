"""Rule `figure_grid`: Figure A1, validation loss per epoch for every grid point of the prior's search."""

import json
import logging
from pathlib import Path

import pandas as pd

from osteoloc.figures.training import figure_grid

smk = snakemake  # noqa: F821 (injected by Snakemake)
logging.basicConfig(filename=smk.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

selection = json.loads(Path(smk.input.selection).read_text())
histories = {Path(path).parent.name: pd.read_csv(path) for path in smk.input.histories}
figure_grid(histories, selection, smk.output[0])
logging.info("Figure A1 from %d grid points, chosen %s", len(histories), selection["point"])
