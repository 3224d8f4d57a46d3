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
