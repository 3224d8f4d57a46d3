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


def _tracked(script):
    scripts = PACKAGE_ROOT.parents[1] / "scripts"
    return {Path(p).relative_to(PACKAGE_ROOT).as_posix() for p in library_sources(scripts / script)}


def test_an_entry_module_adds_only_what_the_imported_entry_points_use():
    """cohort/stages.py holds the phantom's and BoneFinder's entry points: each rule tracks the module, but
    through it only its own code; likewise the split does not track the training loop beside it."""
    phantom, bonefinder, split = _tracked("phantom_shard.py"), _tracked("bonefinder_shard.py"), _tracked("split.py")
    assert {"cohort/stages.py", "cohort/phantom/cohort.py"} <= phantom and "cohort/bonefinder.py" not in phantom
    assert {"cohort/stages.py", "cohort/bonefinder.py"} <= bonefinder
    assert not any(p.startswith("cohort/phantom/") for p in bonefinder)
    assert {"train/stages.py", "train/splits.py"} <= split and "train/loop.py" not in split
    assert "train/loop.py" in _tracked("train.py")


def test_an_entry_module_follows_its_own_helpers_and_constants(tmp_path):
    """Names the entry point reaches through a helper or constant of the entry module count too."""
    script = tmp_path / "script.py"
    script.write_text("from osteoloc.report.stages import SUMMARY_TABLES, report_summary\n")
    names = {Path(p).relative_to(PACKAGE_ROOT).as_posix() for p in library_sources(script)}
    assert {"report/stages.py", "report/tables.py", "io/atomic.py"} <= names
    assert "report/figures.py" not in names and "report/ablation.py" not in names
