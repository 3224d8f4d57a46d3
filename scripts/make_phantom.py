"""Rule phantom_cohort: generate the phantom cohort into the folder of the manifest output."""

import json
import logging
from pathlib import Path

from osteoloc.phantom import make_cohort

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
make_cohort(json.loads(snakemake.params.phantom), Path(snakemake.output.manifest).parent)
