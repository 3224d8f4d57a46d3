"""Rule segment_patches: one site's train / val / test patches (paper B)."""

import json

from osteoloc.runner import run_script
from osteoloc.segment.stages import make_patches

run_script(snakemake, lambda smk: make_patches(  # noqa: F821
    smk.input.study, smk.input.split, smk.input.exclusions, smk.wildcards.site, json.loads(smk.params.cfg), smk.params.seed,
    smk.output.patches))
