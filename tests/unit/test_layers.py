"""The library's layers (pyproject.toml, [tool.importlinter]): stages import downward only (cohort <
preprocess < train < explain < report < segment), io and names import no stage, runner and provenance import
nothing of osteoloc, and no package's modules import each other in a cycle. Also: no osteoloc import inside
a function, but the few meant ones (code provenance does not follow them; see osteoloc.provenance)."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# module -> functions that may import osteoloc modules inside them, and why
LOCAL_IMPORTS_MEANT = {
    "osteoloc/preprocess/stages.py": {"expert_references"},  # only studies with references depend on the reader
}


def _lint_imports(src):
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=REPO, env={"PYTHONPATH": str(src), "PATH": str(LINT_IMPORTS.parent)},
                          capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    proc = _lint_imports(SRC)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract can fail: io importing a stage (here the report's tables) is refused."""
    shutil.copytree(SRC / "osteoloc", tmp_path / "osteoloc", ignore=shutil.ignore_patterns("__pycache__"))
    atomic = tmp_path / "osteoloc" / "io" / "atomic.py"
    atomic.write_text(atomic.read_text() + "\nimport osteoloc.report.tables  # noqa: E402\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "osteoloc.io is not allowed to import osteoloc.report" in proc.stdout


def _local_osteoloc_imports(path):
    """{function name: [line]} of osteoloc imports inside functions of the module at `path`."""
    found = {}
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "osteoloc" or name.startswith("osteoloc.") for name in names):
                found.setdefault(function.name, []).append(node.lineno)
    return found


def test_no_osteoloc_imports_inside_functions_but_the_meant_ones():
    unexpected = {}
    for path in sorted((SRC / "osteoloc").rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        for function, lines in _local_osteoloc_imports(path).items():
            if function not in LOCAL_IMPORTS_MEANT.get(module, set()):
                unexpected[f"{module}:{function}"] = lines
    assert not unexpected, f"osteoloc imported inside functions (move them to the top): {unexpected}"
    for module, functions in LOCAL_IMPORTS_MEANT.items():
        assert set(_local_osteoloc_imports(SRC / module)) >= functions, f"{module}: allow-list out of date"
