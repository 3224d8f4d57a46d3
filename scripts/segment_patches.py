"""Rule segment_patches: one site's train / val / test patches (paper B)."""

import json
import logging

from osteoloc.segment.stages import make_patches

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO,  # noqa: F821
                    format="%(asctime)s %(levelname)s %(message)s")
try:
    make_patches(snakemake.input.study, snakemake.input.split, snakemake.wildcards.site,  # noqa: F821
                 json.loads(snakemake.params.cfg), snakemake.params.seed, snakemake.output.patches)  # noqa: F821
except Exception:
    logging.exception("segment_patches failed")
    raise
