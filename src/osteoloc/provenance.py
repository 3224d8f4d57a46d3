"""Which library files a script depends on, so the workflow can rerun a rule when one of them changes.

Snakemake reruns a rule when its own script changes, not when a module it imports does; listing the
imported osteoloc source files as inputs closes that gap.

Only imports outside function bodies count. An import inside a function is the library's way of saying
"only some studies need this module" (the expert references reader): a rule whose study needs it names it
in `also`, so a study without it neither depends on it nor reruns when it changes. tests/test_layers.py
keeps such imports to the few that are meant.
"""

import ast
from pathlib import Path

PACKAGE = "osteoloc"
PACKAGE_ROOT = Path(__file__).resolve().parent


def _outside_functions(tree):
    """Every node of `tree` that is not inside a function body (or a lambda)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(child for child in ast.iter_child_nodes(node)
                       if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def _imported_modules(path):
    """Dotted names of the osteoloc modules `path` imports outside functions (absolute imports only)."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    names = set()
    for node in _outside_functions(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _module_file(name):
    """The source file of a dotted osteoloc module name, or None for a name that is not a module."""
    parts = name.split(".")[1:]
    if not parts:
        return PACKAGE_ROOT / "__init__.py"
    relative = Path(*parts)
    for candidate in (PACKAGE_ROOT / relative.with_suffix(".py"), PACKAGE_ROOT / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def library_sources(script, also=()):
    """Sorted paths of every osteoloc source file `script` imports, directly or through other modules, and
    of the modules named in `also` (dotted names, e.g. "osteoloc.cohort.references") and what they import.

    Package `__init__.py` files on the way are included, since Python runs them on import.
    """
    seen = set()
    pending = [Path(script)]

    def follow(name):
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            source = _module_file(".".join(parts[:depth]))
            if source is not None and source not in seen:
                seen.add(source)
                pending.append(source)

    for name in also:
        if _module_file(name) is None:
            raise ValueError(f"{name}: not a module of {PACKAGE}")
        follow(name)
    while pending:
        for name in _imported_modules(pending.pop()):
            follow(name)
    return sorted(str(p) for p in seen)
