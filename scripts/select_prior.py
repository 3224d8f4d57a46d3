"""Rules `select_prior_round` (one selection over the points tried so far, naming the extension points)
and `select_prior` (selection.json from all rounds)."""

import json
import logging
from pathlib import Path

import pandas as pd

from osteoloc.grid import point_loss, selection_record, selection_round
from osteoloc.io.atomic import write_text

smk = snakemake  # noqa: F821 (injected by Snakemake)
logging.basicConfig(filename=smk.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

if smk.rule == "select_prior_round":
    losses = {Path(path).parent.name: point_loss(pd.read_csv(path), smk.params.criterion)
              for path in smk.input.histories}
    record = selection_round(losses, json.loads(smk.params.steps), smk.params.round, smk.params.max_rounds)
else:
    rounds = [json.loads(Path(path).read_text()) for path in smk.input.rounds]
    record = selection_record(rounds, smk.params.criterion)
logging.info("%s", json.dumps(record, indent=1))
write_text(json.dumps(record, indent=1) + "\n", smk.output[0])
