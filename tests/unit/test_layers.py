"""The library's layers (pyproject.toml, [tool.importlinter]): stages import downward only (cohort <
preprocess < train < explain < report < segment), io and names import no stage, runner and provenance import
nothing of osteoloc, and no package's modules import each other in a cycle. Also: no osteoloc import inside
a function, but the few meant ones (code provenance does not follow them; see osteoloc.provenance). The
workflow keeps the same order: a stage's .smk imports nothing of a later stage, and a script calls its stage
only through that stage's `stages` module. The tests keep theirs: no test module imports another (shared
builders live in tests/helpers.py, shared fixtures in tests/conftest.py)."""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
RULES = REPO / "workflow" / "rules"
SCRIPTS = REPO / "scripts"
# common.smk serves every stage's rules: its imports are listed, so that a new one is looked at
COMMON_IMPORTS_MEANT = {"osteoloc.cohort.phantom.settings", "osteoloc.names", "osteoloc.provenance",
                        "osteoloc.train.arms"}
UTILITIES = {"osteoloc.runner", "osteoloc.provenance"}  # outside the layers (pyproject.toml)
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


def _layer_rank():
    """{top-level package: its place in the layers contract, 0 = the latest stage}."""
    contract = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    return {name.strip(): rank for rank, layer in enumerate(contract["layers"]) for name in layer.split("|")}


def _smk_imports(text):
    """Dotted osteoloc modules a .smk file imports (at parse time or inside its functions)."""
    return re.findall(r"^\s*(?:from|import)\s+(osteoloc(?:\.\w+)*)", text, re.M)


def _later_stage_imports(stage, text, rank):
    """The imports of a `stage` .smk file (its text) from a stage after it in the layers."""
    return [module for module in _smk_imports(text)
            if module not in UTILITIES and rank[module.split(".")[1]] < rank[stage]]


def test_smk_files_import_nothing_of_a_later_stage():
    """A stage's rules parse with its own and earlier stages' code only: a later stage's module imported
    there would be read at every parse and, through its imports, tie the stage's rules to later code."""
    rank = _layer_rank()
    stages = sorted(RULES.glob("*.smk"))
    assert {p.stem for p in stages} - {"common"} <= set(rank), "a .smk file named after no stage"
    found = {p.name: _later_stage_imports(p.stem, p.read_text(), rank) for p in stages if p.stem != "common"}
    assert not any(found.values()), f"later stages imported: { {k: v for k, v in found.items() if v} }"
    assert set(_smk_imports((RULES / "common.smk").read_text())) <= COMMON_IMPORTS_MEANT


def test_a_later_stage_import_in_a_smk_file_is_found():
    """The check can fail: the cohort rules reading the shard plan through the preprocessing's stages."""
    text = ("from osteoloc.io.shard_folder import read_shard_plan\n"
            "from osteoloc.preprocess.stages import read_shard_plan\n")
    assert _later_stage_imports("cohort", text, _layer_rank()) == ["osteoloc.preprocess.stages"]


def test_scripts_call_only_their_stages_module():
    """A script imports osteoloc.runner and one `osteoloc.<stage>.stages` module, nothing else of osteoloc."""
    wrong = {}
    for script in sorted(SCRIPTS.glob("*.py")):
        modules = set()
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
            elif isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
        library = {m for m in modules if m.split(".")[0] == "osteoloc"} - {"osteoloc.runner"}
        if len(library) != 1 or not re.fullmatch(r"osteoloc\.\w+\.stages", next(iter(library))):
            wrong[script.name] = sorted(library)
    assert not wrong, f"scripts calling modules other than their stage's `stages`: {wrong}"


def _test_module_imports(text, test_modules):
    """The modules of `test_modules` (names) that the Python source `text` imports, anywhere in it."""
    found = []
    for node in ast.walk(ast.parse(text)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found += [name for name in names if set(name.split(".")) & test_modules]
    return found


def test_no_test_module_imports_another():
    """Importing a test module runs its module-level code and its fixtures' names into another module, and
    ties the two modules' edits together: builders belong in tests/helpers.py, fixtures in conftest.py."""
    paths = [path for folder in ("unit", "workflow") for path in sorted((REPO / "tests" / folder).glob("test_*.py"))]
    test_modules = {path.stem for path in paths} | {"conftest"}
    found = {path.name: _test_module_imports(path.read_text(), test_modules) for path in paths}
    assert not any(found.values()), f"test modules importing test modules: { {k: v for k, v in found.items() if v} }"


def test_a_test_module_importing_another_is_found():
    """The check can fail: the import the shards' tests used to take the bad cohort from."""
    text = "import numpy\nfrom helpers import load_study\nfrom test_preprocess import SETTINGS, _bad_cohort\n"
    assert _test_module_imports(text, {"test_preprocess", "conftest"}) == ["test_preprocess"]
