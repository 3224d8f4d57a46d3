"""Rule `preprocess_exclusions`: the whole exclusions table from the shards' tables (never fails on the share)."""

import json
from pathlib import Path

from osteoloc.preprocess.stages import preprocess_exclusions
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: preprocess_exclusions(  # noqa: F821
    smk.params.source, dict(smk.input.items()), json.loads(smk.params.settings),
    [Path(p).parent for p in smk.input.units], smk.output.exclusions))
