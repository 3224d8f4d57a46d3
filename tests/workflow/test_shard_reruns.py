"""What a change to a 3-shard manifest cohort reruns, counted from the jobs snakemake actually ran: appending one
radiograph runs exactly its own shard job, fixing one grade none, and an image replaced by a corrected copy
with an older modification time (`cp -p`) its own shard again; moving one hip's expert reference runs its own
shard job, a reference for a hip with no radiograph none; a dry run says how many shard jobs will run."""

import os
import re
import shutil

import pandas as pd
import pytest
from workflow_copy import copy_workflow, snakemake

from helpers import load_study, make_cohort, radiograph_points_mm
from osteoloc.names import TARGETS

pytestmark = pytest.mark.workflow

TARGET = "results/preprocess/study.h5"
SHARD_JOB = re.compile(r"^(?:local)?rule preprocess_shard:$", re.MULTILINE)
OVERRIDE = """\
cohort: {source: manifest, manifest: cohort/manifest.csv, labels: cohort/labels.csv}
preprocess: {shard_size: 4, crop_size: 80, spacing_mm: 0.8, max_excluded_fraction: 0.5}
"""


def _run(workdir, *args):
    """(shard jobs run, snakemake's output) of one run."""
    proc = snakemake(workdir, TARGET, "--cores", "1", "--configfile", "override.yaml", *args)
    out = proc.stdout + proc.stderr
    return len(SHARD_JOB.findall(out)), out


def _study_grades(workdir):
    study = load_study(workdir / TARGET, images=False)
    return {(s, side): tuple(g) for s, side, g in zip(study.meta.subject, study.meta.side, study.grades)}


def test_append_fix_and_older_copy_rerun_only_their_shards(tmp_path):
    workdir = copy_workflow(tmp_path / "study")
    make_cohort(workdir / "cohort", 10, seed=0)  # 10 radiographs, shard_size 4: 3 shards
    make_cohort(tmp_path / "more", 11, seed=0)  # the same 10 and an 11th
    (workdir / "override.yaml").write_text(OVERRIDE)
    ran, out = _run(workdir)
    assert ran == 3 and "preprocess: 3 of 3 shard jobs to run" in out, out[-3000:]

    # append one radiograph (its files, its manifest row, its two label rows)
    cohort = workdir / "cohort"
    for path in (tmp_path / "more").glob("00010_T00_APO.*"):
        shutil.copy2(path, cohort / path.name)
    for name, lines in (("manifest.csv", 1), ("labels.csv", 2)):
        tail = (tmp_path / "more" / name).read_text().splitlines()[-lines:]
        with open(cohort / name, "a") as handle:
            handle.write("\n".join(tail) + "\n")
    dry = snakemake(workdir, TARGET, "-n", "--cores", "1", "--configfile", "override.yaml")
    assert "preprocess: 1 of 3 shard jobs to run" in dry.stdout + dry.stderr
    ran, out = _run(workdir)
    assert ran == 1, f"appending one radiograph ran {ran} shard jobs:\n{out[-3000:]}"
    assert ("CHECK-00010", "left") in _study_grades(workdir)

    # fix one grade: no shard job, the gather joins the new grade
    labels = pd.read_csv(cohort / "labels.csv")
    labels.loc[0, "osteo_fem_sup"] = (labels.loc[0, "osteo_fem_sup"] + 1) % 4
    labels.to_csv(cohort / "labels.csv", index=False)
    ran, out = _run(workdir)
    assert ran == 0, f"fixing one grade ran {ran} shard jobs:\n{out[-3000:]}"
    assert "localrule preprocess:" in out or "rule preprocess:" in out
    fixed = labels.iloc[0]
    assert _study_grades(workdir)[(fixed.subject, fixed.side)][TARGETS.index("osteo_fem_sup")] == fixed.osteo_fem_sup

    # a corrected image copied in with an older modification time (cp -p): its shard reruns
    image = cohort / "00003_T00_APO.dcm"
    stat = image.stat()
    shutil.copyfile(tmp_path / "more" / "00004_T00_APO.dcm", image)  # other pixels: a different radiograph
    os.utime(image, ns=(stat.st_atime_ns - 10**12, stat.st_mtime_ns - 10**12))  # older than every output
    ran, out = _run(workdir)
    assert ran == 1, f"an older copy of new content ran {ran} shard jobs:\n{out[-3000:]}"
    ran, _ = _run(workdir)
    assert ran == 0, "a second run after the copy reran a shard"


REFERENCES_OVERRIDE = OVERRIDE.replace("labels: cohort/labels.csv}", "labels: cohort/labels.csv,\n  references: cohort/references.csv}")


def _lesions_by_hip(workdir):
    study = load_study(workdir / TARGET, images=False)
    return {(s, side): lesions for s, side, lesions in zip(study.meta.subject, study.meta.side, study.layers["lesions"])}


def test_reference_edit_reruns_only_its_shard(tmp_path):
    workdir = copy_workflow(tmp_path / "study")
    cohort = workdir / "cohort"
    make_cohort(cohort, 10, seed=0)  # as make_cohort draws them: radiograph i's points from seed i
    # one expert point per right hip, on its superior femoral head (point 15 of the default osteo_fem_sup group)
    rows = [dict(subject=f"CHECK-{i:05d}", visit="T00", side="right", target="osteo_fem_sup", kind="point",
                 unit="mm", x=x, y=y) for i in range(10) for x, y in [radiograph_points_mm((400, 600), 0.4, seed=i)[15]]]
    pd.DataFrame(rows).to_csv(cohort / "references.csv", index=False)
    (workdir / "override.yaml").write_text(REFERENCES_OVERRIDE)
    ran, out = _run(workdir)
    assert ran == 3, out[-3000:]
    before = _lesions_by_hip(workdir)
    moved = ("CHECK-00004", "right")
    assert before[moved][0].any(), "the reference was not drawn"

    # move one hip's reference by 4 mm, in place: only its shard reruns, and its lesion mask moves
    frame = pd.read_csv(cohort / "references.csv")
    frame.loc[frame.subject == moved[0], "x"] += 4.0
    frame.to_csv(cohort / "references.csv", index=False)
    dry = snakemake(workdir, TARGET, "-n", "--cores", "1", "--configfile", "override.yaml")
    assert "preprocess: 1 of 3 shard jobs to run" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]
    ran, out = _run(workdir)
    assert ran == 1, f"moving one hip's reference ran {ran} shard jobs:\n{out[-3000:]}"
    after = _lesions_by_hip(workdir)
    assert not (after[moved] == before[moved]).all()
    assert all((after[hip] == before[hip]).all() for hip in before if hip != moved)

    # a reference for a hip with no radiograph: no shard job, the gather's note names it
    with open(cohort / "references.csv", "a") as handle:
        handle.write("CHECK-99999,T00,left,osteo_fem_sup,point,mm,50.0,50.0\n")
    ran, out = _run(workdir)
    assert ran == 0, f"a reference of no radiograph ran {ran} shard jobs:\n{out[-3000:]}"
    exclusions = pd.read_csv(workdir / "results" / "preprocess" / "exclusions.csv", dtype=str)
    assert ((exclusions.subject == "CHECK-99999") & (exclusions.stage == "references")).any()
