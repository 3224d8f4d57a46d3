"""Subject-level train / validation / test splits: seeded, or read from a `subject,split` file (the one
split-file reader of the library)."""

from pathlib import Path

import numpy as np
import pandas as pd

from osteoloc.io.labels import subject_key

SPLITS = ("train", "val", "test")


def make_split(subjects, fractions=(0.70, 0.15, 0.15), seed=0, test_seed=None):
    """Assign every unique subject to train / val / test with the given fractions, shuffled by `seed`.

    Counts are rounded so they add up to the number of subjects (train takes the remainder); the result
    is sorted by subject so it does not depend on the input order. `test_seed`: the test subjects are drawn
    by this seed instead, the same for every `seed` (one held-out test set on which every run is scored);
    `seed` then shuffles only the remaining subjects into train and val.
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    # one entry per person: ids compare ignoring case and blanks (the study stores one spelling each)
    unique = np.array(sorted({subject_key(s): str(s) for s in reversed(list(subjects))}.values()))
    n_val = int(round(fractions[1] * len(unique)))
    n_test = int(round(fractions[2] * len(unique)))
    n_train = len(unique) - n_val - n_test
    if test_seed is None:
        order = np.random.default_rng(seed).permutation(len(unique))
    else:
        held_out = np.random.default_rng(test_seed).permutation(len(unique))
        rest, test = held_out[: n_train + n_val], held_out[n_train + n_val:]
        # the rest in subject order before the seed's shuffle: train / val do not depend on test_seed's order
        rest = np.sort(rest)
        order = np.concatenate([rest[np.random.default_rng(seed).permutation(len(rest))], test])
    labels = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    split = pd.DataFrame({"subject": unique[order], "split": labels})
    return split.sort_values("subject", ignore_index=True)


def read_split(path):
    """The one split-file reader (contracts.md section 3): DataFrame `subject, split` of str, stripped.

    Accepts a header (`subject,split`, other columns ignored) or none (two columns, subject first),
    fields separated by commas, tabs or spaces. Errors name the file; `check_split` then checks the
    split against the study.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            head = handle.readline()
        # the first line decides: commas, else tabs, else runs of spaces
        sep = "," if "," in head else "\t" if "\t" in head else r"\s+"
        table = pd.read_csv(path, sep=sep, engine="python", header=None, dtype=str, keep_default_na=False,
                            skip_blank_lines=True, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read the split file ({err})") from None
    table = table.apply(lambda column: column.str.strip())
    first = [str(v).lower() for v in table.iloc[0]] if len(table) else []
    if {"subject", "split"} <= set(first):
        table = table.iloc[1:].set_axis(first, axis=1)
    elif table.shape[1] == 2 and len(table) and table.iloc[0, 1] in SPLITS:
        table = table.set_axis(["subject", "split"], axis=1)
    else:
        raise ValueError(f"{path}: split file lacks column(s) subject, split; expected 'subject,split' "
                         f"(a header, or two columns without one), found {first[:4]}")
    return table[["subject", "split"]].reset_index(drop=True)


def check_split(split, subjects, source="split"):
    """Refuse a split that puts a subject in two splits, names an unknown split, or misses a subject.

    `subjects`: every subject of the study HDF5. Returns the split with one row per subject, sorted.
    """
    bad = sorted(set(split["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"{source}: unknown split name(s) {bad}; use {list(SPLITS)}")
    # subject ids compare ignoring case and blanks; the result spells them as the study does
    study = {subject_key(s): str(s) for s in subjects}
    split = split.assign(subject=[study.get(subject_key(s), str(s)) for s in split["subject"]])
    per_subject = split.drop_duplicates().groupby("subject")["split"].nunique()
    leaked = sorted(per_subject.index[per_subject > 1])
    if leaked:
        raise ValueError(f"{source}: {len(leaked)} subject(s) in more than one split, e.g. {leaked[:5]}")
    absent = sorted(set(study.values()) - set(split["subject"]))
    if absent:
        raise ValueError(f"{source}: {len(absent)} subject(s) of the study have no split, e.g. {absent[:5]}")
    split = split.drop_duplicates()
    split = split[split["subject"].isin(set(study.values()))]
    return split.sort_values("subject", ignore_index=True)
