"""Everything that could not be used, with the reason: the exclusions table (docs/contracts.md section 2).

`stage` names the step that refused the input: `dicom`, `points`, `landmarks`, `labels`, `crop`, `error`.
Hip sources yield `Exclusion` rows; the driver collects them in an `Exclusions` table.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd

COLUMNS = ("stage", "subject", "visit", "side", "file", "reason")


class TooManyExclusions(RuntimeError):
    """More hips were excluded than the study allows."""


class Exclusion(NamedTuple):
    """One row of the exclusions table: a radiograph (side "") or a hip that was not used, and why."""

    stage: str
    subject: str
    visit: str
    side: str
    file: str
    reason: str

    @classmethod
    def of(cls, stage, subject, visit, side, file, reason):
        """The row with `file` reduced to its name and that name replacing the full path in `reason`
        (no folders in any output), blanks in the reason collapsed."""
        name = "" if not file else str(file).replace("\\", "/").rsplit("/", 1)[-1]
        reason = str(reason).replace(str(file), name) if file else str(reason)
        return cls(stage, subject, visit, side or "", name, " ".join(reason.split()))


@dataclass
class Exclusions:
    rows: list = field(default_factory=list)

    def append(self, row):
        """Record one `Exclusion`."""
        self.rows.append(row)

    def frame(self):
        return pd.DataFrame([row._asdict() for row in self.rows], columns=list(COLUMNS))

    def check_fraction(self, n_hips, n_kept, max_fraction):
        """Raise TooManyExclusions when the share of the `n_hips` expected hips not kept exceeds the limit."""
        if n_hips == 0:
            raise TooManyExclusions("the cohort holds no hips at all (empty manifest?)")
        excluded = n_hips - n_kept
        fraction = excluded / n_hips
        if fraction > max_fraction:
            reasons = self.frame()["stage"].value_counts().to_dict()
            raise TooManyExclusions(
                f"{excluded} of {n_hips} hips ({fraction:.1%}) were excluded, more than "
                f"preprocess.max_excluded_fraction = {max_fraction:.1%}; exclusions by stage: {reasons}. "
                "See the exclusions table for each file and reason.")
        return fraction
