"""Which library files a script depends on, so the workflow can rerun a rule when one of them changes.

Snakemake reruns a rule when its own script changes, not when a module it imports does; listing the
imported osteoloc source files as inputs closes that gap.

Two refinements keep a rule's scope to what its code means:
- A stage's entry module (`osteoloc.<stage>.stages`) serves every rule of the stage. A script depends on
  that module's file, but through it only on the modules the entry functions it imports use (their names,
  followed through the module's own functions and constants): the phantom's rules do not depend on the
  BoneFinder runner beside them, nor the split on the training loop.
- Only imports outside function bodies count. An import inside a function is the library's way of saying
  "only some studies need this module" (the expert references reader): a rule whose study needs it names it
  in `also`, so a study without it neither depends on it nor reruns when it changes. tests/unit/test_layers.py
  keeps such imports to the few that are meant.
"""

import ast
import functools
from pathlib import Path

PACKAGE = "osteoloc"
PACKAGE_ROOT = Path(__file__).resolve().parent
ENTRY_MODULE = "stages"  # osteoloc.<stage>.stages: the entry points the scripts call


def _parsed(path):
    """The syntax tree of `path`, parsed once per content (as its modification time and size tell): every
    rule asks for the same modules while snakemake parses the workflow."""
    stat = path.stat()
    return _parse(str(path), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _parse(path, mtime_ns, size):
    return ast.parse(Path(path).read_text(), filename=path)


def _is_library(name):
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _outside_functions(tree):
    """Every node of `tree` that is not inside a function body (or a lambda)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(child for child in ast.iter_child_nodes(node)
                       if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def _imports(tree):
    """[(dotted module, {bound names} or None)] of the osteoloc imports of `tree` outside functions: for
    `from m import a, b` the names a, b (m and m.a, m.b may be modules); None for `import m`."""
    found = []
    for node in _outside_functions(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if _is_library(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _is_library(node.module):
            found.append((node.module, {alias.name for alias in node.names}))
    return found


def _bindings(tree):
    """{name bound at module level by an osteoloc import: the dotted modules it may come from}."""
    bound = {}
    for node in _outside_functions(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_library(alias.name):
                    bound.setdefault(alias.asname or alias.name.split(".")[0], set()).add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _is_library(node.module):
            for alias in node.names:
                bound.setdefault(alias.asname or alias.name, set()).update(
                    {node.module, f"{node.module}.{alias.name}"})
    return bound


def _used_imports(tree, names):
    """Dotted osteoloc modules that the module-level functions, classes and constants `names` of `tree` use,
    directly or through other module-level definitions of `tree`."""
    bound = _bindings(tree)
    definitions = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            definitions[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        definitions[name.id] = node
    modules, seen, pending = set(), set(), list(names)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        modules |= bound.get(name, set())
        if name in definitions:
            pending += [n.id for n in ast.walk(definitions[name]) if isinstance(n, ast.Name)]
    return modules


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
    pending = []  # (source file, its names the importer uses, or None for all of it)

    def follow(name, used=None):
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            source = _module_file(".".join(parts[:depth]))
            if source is None:
                continue
            entry = depth == len(parts) and used is not None and parts[-1] == ENTRY_MODULE
            if entry:
                seen.add(source)
                pending.append((source, used))
            elif source not in seen:
                seen.add(source)
                pending.append((source, None))

    for name in also:
        if _module_file(name) is None:
            raise ValueError(f"{name}: not a module of {PACKAGE}")
        follow(name)
    pending.append((Path(script), None))
    while pending:
        path, used = pending.pop()
        tree = _parsed(Path(path))
        if used is not None:  # an entry module: only what the used entry points need
            for name in _used_imports(tree, used):
                follow(name)
            continue
        for module, names in _imports(tree):
            if names is None:
                follow(module)
            else:
                follow(module, names)
                for name in names:
                    follow(f"{module}.{name}")
    return sorted(str(p) for p in seen)
