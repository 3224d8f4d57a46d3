"""Rule `preprocess` (the gather): the excluded-share check, then the one study HDF5 from the shards' crops."""

import json
from pathlib import Path

from osteoloc.preprocess.stages import preprocess_gather
from osteoloc.runner import run_script

run_script(snakemake, lambda smk: preprocess_gather(  # noqa: F821
    smk.params.source, dict(smk.input.items()), json.loads(smk.params.settings),
    [Path(p).parent for p in smk.input.units], smk.output.study))
