"""Subject-level train / validation / test splits: seeded, or read from a `subject,split` file (the one
split-file reader of the library).

A person is a subject id (compared ignoring case and blanks) within its cohort: an id that two cohorts of the
study use is two people, and the split names those with their cohort (an optional `cohort` column, empty for
every other subject, so a study whose ids are unique has the same `subject,split` table as ever).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from osteoloc.io.labels import cohort_key, split_key, subject_key

SPLITS = ("train", "val", "test")


def people(subjects, cohorts=None):
    """{split_key: (cohort, subject)} of the study's rows, spelled as first met: a subject id under two or
    more cohorts is one person per cohort; under one cohort (or none) it is one person keyed by the id alone,
    its cohort left empty. Raises ValueError for an id under several cohorts that some rows give no cohort
    (which person would they be?)."""
    subjects = [str(s) for s in subjects]
    cohorts = [""] * len(subjects) if cohorts is None else [str(c) for c in cohorts]
    named = {}
    for cohort, subject in zip(cohorts, subjects):
        if cohort.strip():
            named.setdefault(subject_key(subject), set()).add(cohort_key(cohort))
    shared = {key for key, found in named.items() if len(found) > 1}
    found = {}
    for cohort, subject in zip(cohorts, subjects):
        key = subject_key(subject)
        if key in shared and not cohort.strip():
            raise ValueError(f"subject {subject!r} is in cohorts {sorted(named[key])} and also without a cohort: "
                             "which person is it? Give every row of it its cohort")
        cohort = cohort if key in shared else ""
        found.setdefault(split_key(cohort, subject), (cohort, subject))
    return found


def _table(entries, splits):
    """The split table of (cohort, subject) entries: `subject, split`, with a `cohort` column first when a
    subject id is shared by two cohorts; sorted by subject, then cohort."""
    frame = pd.DataFrame({"cohort": [c for c, _ in entries], "subject": [s for _, s in entries], "split": splits})
    frame = frame.sort_values(["subject", "cohort"], ignore_index=True)
    return frame if (frame["cohort"] != "").any() else frame.drop(columns="cohort")


def make_split(subjects, fractions=(0.70, 0.15, 0.15), seed=0, test_seed=None, cohorts=None):
    """Assign every person (`people` of `subjects` and their `cohorts`) to train / val / test with the given
    fractions, shuffled by `seed`.

    Counts are rounded so they add up to the number of people (train takes the remainder); the result
    is sorted by subject so it does not depend on the input order. `test_seed`: the test people are drawn
    by this seed instead, the same for every `seed` (one held-out test set on which every run is scored);
    `seed` then shuffles only the remaining people into train and val.
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    # one entry per person, spelled as the study first does (ids compare ignoring case and blanks)
    unique = sorted(people(subjects, cohorts).values(), key=lambda entry: (entry[1], entry[0]))
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
    labels = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    return _table([unique[i] for i in order], labels)


def read_split(path):
    """The one split-file reader (contracts.md section 3): DataFrame `subject, split` of str, stripped (with
    `cohort` first when the file has that column).

    Accepts a header (`subject,split`, optionally `cohort`, other columns ignored) or none (two columns, subject first),
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
    columns = (["cohort"] if "cohort" in table.columns else []) + ["subject", "split"]
    return table[columns].reset_index(drop=True)


def check_split(split, subjects, source="split", cohorts=None):
    """Refuse a split that puts a person in two splits, names an unknown split, or misses a person.

    `subjects` (and `cohorts`): every row's of the study HDF5; a subject id the study has under two cohorts
    needs the split's `cohort` column. Returns the split with one row per person, sorted, spelled as the
    study (`make_split`'s table)."""
    bad = sorted(set(split["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"{source}: unknown split name(s) {bad}; use {list(SPLITS)}")
    study = people(subjects, cohorts)  # split_key -> (cohort, subject) as the study spells them
    shared = {key[1] for key in study if isinstance(key, tuple)}
    given = split["cohort"] if "cohort" in split.columns else [""] * len(split)
    keys = []
    for cohort, subject in zip(given, split["subject"]):
        if subject_key(subject) in shared and not str(cohort).strip():
            names = sorted(c for c, s in study.values() if subject_key(s) == subject_key(subject))
            raise ValueError(f"{source}: subject {subject!r} is in cohorts {names} of the study: give the split a "
                             "cohort column naming which one each row means")
        keys.append(split_key(cohort if subject_key(subject) in shared else "", subject))
    frame = pd.DataFrame({"key": keys, "split": list(split["split"])}).drop_duplicates()
    per_person = frame.groupby("key")["split"].nunique()
    leaked = sorted(str(study.get(key, ("", key))[1]) if not isinstance(key, tuple) else f"{key[1]} ({key[0]})"
                    for key in per_person.index[per_person > 1])
    if leaked:
        raise ValueError(f"{source}: {len(leaked)} subject(s) in more than one split, e.g. {leaked[:5]}")
    assigned = dict(zip(frame["key"], frame["split"]))
    absent = sorted(subject if not cohort else f"{subject} ({cohort})"
                    for key, (cohort, subject) in study.items() if key not in assigned)
    if absent:
        raise ValueError(f"{source}: {len(absent)} subject(s) of the study have no split, e.g. {absent[:5]}")
    return _table(list(study.values()), [assigned[key] for key in study])
