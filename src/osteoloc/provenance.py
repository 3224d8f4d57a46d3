"""Which library files a script depends on, so the workflow can rerun a rule when one of them changes.

Snakemake reruns a rule when its own script changes, not when a module it imports does; listing the
imported osteoloc source files as inputs closes that gap.
"""

import ast
import functools
from pathlib import Path

PACKAGE = "osteoloc"
PACKAGE_ROOT = Path(__file__).resolve().parent


def _imported_modules(path):
    """Dotted names of the osteoloc modules `path` imports (absolute imports only)."""
    stat = Path(path).stat()
    return _parsed_imports(str(path), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _parsed_imports(path, mtime_ns, size):
    """Every rule asks for the same modules while snakemake parses the workflow: each file is parsed once
    (per content, as far as its modification time and size tell)."""
    tree = ast.parse(Path(path).read_text(), filename=path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(name for name in names if name == PACKAGE or name.startswith(PACKAGE + "."))


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


def library_sources(script):
    """Sorted paths of every osteoloc source file `script` imports, directly or through other modules.

    Package `__init__.py` files on the way are included, since Python runs them on import.
    """
    seen = set()
    pending = [Path(script)]
    while pending:
        for name in _imported_modules(pending.pop()):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                source = _module_file(".".join(parts[:depth]))
                if source is not None and source not in seen:
                    seen.add(source)
                    pending.append(source)
    return sorted(str(p) for p in seen)
