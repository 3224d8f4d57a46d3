"""Everything that could not be used, with the reason: the exclusions table (docs/contracts.md section 2).

`stage` names the step that refused the input: `dicom`, `points`, `landmarks`, `labels`, `crop`, `truth`.
"""

from dataclasses import dataclass, field

import pandas as pd

COLUMNS = ("stage", "subject", "visit", "side", "file", "reason")


class TooManyExclusions(RuntimeError):
    """More hips were excluded than the study allows."""


@dataclass
class Exclusions:
    rows: list = field(default_factory=list)

    def add(self, stage, subject, visit, side, file, reason):
        """Record one excluded radiograph (side "") or hip; `file` is reduced to its name (no folders)."""
        name = "" if not file else str(file).replace("\\", "/").rsplit("/", 1)[-1]
        reason = str(reason).replace(str(file), name) if file else str(reason)  # no folders in outputs
        self.rows.append(dict(stage=stage, subject=subject, visit=visit, side=side or "", file=name,
                              reason=" ".join(reason.split())))

    def frame(self):
        return pd.DataFrame(self.rows, columns=list(COLUMNS))

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
