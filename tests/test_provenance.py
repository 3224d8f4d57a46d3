from pathlib import Path

from osteoloc.provenance import PACKAGE_ROOT, library_sources


def test_sources_follow_imports_through_the_package(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import numpy\nfrom osteoloc.io.atomic import write_csv\n")
    names = {Path(p).relative_to(PACKAGE_ROOT.parent).as_posix() for p in library_sources(script)}
    assert "osteoloc/io/atomic.py" in names
    assert "osteoloc/io/__init__.py" in names
    assert "osteoloc/__init__.py" in names
    assert not any("numpy" in n for n in names)


def test_sources_are_transitive(tmp_path):
    # figures.style imports io.atomic: a script that imports only figures.style depends on both.
    script = tmp_path / "script.py"
    script.write_text("import osteoloc.report.style as style\n")
    names = {Path(p).name for p in library_sources(script)}
    assert {"style.py", "atomic.py"} <= names
    assert "pts.py" not in names


def test_imports_inside_functions_count_only_when_named(tmp_path):
    """A function-local import is an optional dependency: not followed, unless the rule names it in `also`."""
    script = tmp_path / "script.py"
    script.write_text("from osteoloc.io.atomic import write_csv\n\n\ndef later():\n    import osteoloc.io.pts\n")
    names = {Path(p).name for p in library_sources(script)}
    assert "atomic.py" in names and "pts.py" not in names
    names = {Path(p).name for p in library_sources(script, also=["osteoloc.io.pts"])}
    assert {"atomic.py", "pts.py"} <= names


def test_preprocessing_depends_on_the_references_reader_only_when_asked(tmp_path):
    scripts = PACKAGE_ROOT.parents[1] / "scripts"
    names = {Path(p).relative_to(PACKAGE_ROOT).as_posix() for p in library_sources(scripts / "preprocess_shard.py")}
    assert "preprocess/sources.py" in names and "cohort/references.py" not in names
    with_references = library_sources(scripts / "preprocess_shard.py", also=["osteoloc.cohort.references"])
    assert str(PACKAGE_ROOT / "cohort" / "references.py") in with_references
