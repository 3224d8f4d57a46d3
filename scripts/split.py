"""Rule `split`: the subject-level split of one seed (or the user's split file, checked)."""

import json
import logging

from osteoloc.data import read_subjects
from osteoloc.io.atomic import write_csv
from osteoloc.splits import check_split, make_split, read_split_file

smk = snakemake  # noqa: F821 (injected by Snakemake)
logging.basicConfig(filename=smk.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

subjects = read_subjects(smk.input.h5)
if smk.input.get("user_split"):
    split = read_split_file(smk.input.user_split)
    source = smk.input.user_split
else:
    split = make_split(subjects, json.loads(smk.params.fractions), seed=smk.params.seed)
    source = f"seeded split (seed {smk.params.seed})"
split = check_split(split, subjects, source=source)
logging.info("%s: %s", source, split["split"].value_counts().to_dict())
write_csv(split, smk.output[0])
