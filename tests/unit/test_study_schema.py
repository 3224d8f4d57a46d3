"""The study file's one schema (io.study_h5.FIELDS, LAYERS): the docs' table, the records and the reader agree
with it."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import write_study_arrays

from osteoloc.io.study_h5 import FIELDS, LAYERS, HipBatch, HipRecord, StudyFile, StudyWriter
from osteoloc.names import TARGETS

CONTRACTS = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"
HEADER = "| field | path | dtype | shape | meaning |"


def _shape_text(shape):
    """A per-row shape as the docs write it: (S, S), (T,), ()."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _docs_table():
    """{(field, is layer): (path, dtype, shape)} of the study table in contracts.md section 2."""
    text = CONTRACTS.read_text()
    section = text[text.index("\n## 2. "):]
    section = section[:section.index("\n## ", 1)]
    lines = section[section.index(HEADER):].splitlines()[2:]
    rows = {}
    for line in lines:
        if not line.startswith("|"):
            break
        field, path, dtype, shape = (cell.strip() for cell in line.strip("|").split("|")[:4])
        name = re.fullmatch(r"`(\w+)`( \(layer\))?", field)
        assert name, f"contracts.md section 2: the field cell {field!r} is not `name` or `name` (layer)"
        key = (name[1], bool(name[2]))
        assert key not in rows, f"contracts.md section 2 lists {name[1]} twice"
        rows[key] = (path.strip("`").lstrip("/"), dtype, shape)
    return rows


def test_the_docs_table_is_the_schema():
    schema = {(f.name, f in LAYERS): (f.path, f.dtype_name, _shape_text(f.shape)) for f in FIELDS + LAYERS}
    docs = _docs_table()
    assert sorted(set(schema) - set(docs)) == [], "in the schema, not in contracts.md section 2"
    assert sorted(set(docs) - set(schema)) == [], "in contracts.md section 2, not in the schema"
    for key, described in docs.items():
        assert described == schema[key], key


def test_records_and_batches_carry_the_schemas_fields():
    names = {f.name for f in FIELDS}
    assert {f.name for f in dataclasses.fields(HipRecord)} == names | {"layers"}
    assert {f.name for f in dataclasses.fields(HipBatch)} == names | {"rows", "layers"}
    assert len({f.path for f in FIELDS + LAYERS}) == len(FIELDS + LAYERS)


def test_a_record_reads_back_as_a_batch_with_its_layers(tmp_path):
    rng = np.random.default_rng(0)
    n, size = 5, 16
    lesions = (rng.random((n, len(TARGETS), size, size)) > 0.9).astype(np.uint8)
    groups = rng.uniform(2, size - 2, (n, 4, 2, 2)).astype(np.float32)
    write_study_arrays(tmp_path / "study.h5", {"image": rng.random((n, size, size)), "labels": np.ones((n, 4), np.int8),
                                               "groups": groups, "subject": [f"S{i}" for i in range(n)],
                                               "layers": {"lesions": lesions}},
                       {t: [0, 1] for t in TARGETS})
    with StudyFile(tmp_path / "study.h5") as study:
        assert study.layers == ("lesions",)
        batch = study.read(["lesions", "subject", "groups"], [3, 1])
    assert batch.rows.tolist() == [3, 1] and batch.image is None and set(batch.layers) == {"lesions"}
    np.testing.assert_array_equal(batch.layers["lesions"], lesions[[3, 1]])
    np.testing.assert_array_equal(batch.groups, groups[[3, 1]])
    assert batch.subject.tolist() == ["S3", "S1"]


def test_a_record_with_a_layer_the_study_does_not_store_is_refused(tmp_path):
    size = 8
    record = HipRecord(image=np.zeros((size, size), np.float32), grades=np.zeros(4, np.int8),
                       labels=np.zeros(4, np.int8), contour=np.zeros((80, 2), np.float32),
                       contour_manual=np.zeros((80, 2), np.float32), groups=np.zeros((4, 1, 2), np.float32),
                       valid=np.ones((4, 1), bool), subject="S", visit="V", side="right", cohort="", source="",
                       source_spacing=(1.0, 1.0), spacing_from="given", crop_offset=(0.0, 0.0),
                       head_circle=(1.0, 1.0, 1.0), intensity=(0.0, 1.0), layers={"cue": np.zeros((size, size))})
    with pytest.raises(ValueError, match=r"layer\(s\) \['cue'\] the study does not store"):
        with StudyWriter(tmp_path / "s.h5", size, 1.0, {t: [0] for t in TARGETS}, layers=("lesions",)) as writer:
            writer.append(record)
    assert not (tmp_path / "s.h5").exists()
    with pytest.raises(ValueError, match="unknown study layer"):
        StudyWriter(tmp_path / "s.h5", size, 1.0, {t: [0] for t in TARGETS}, layers=("shadow",))
