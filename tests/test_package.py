"""The shape of the package itself: every module reachable, imports one way, checks in one place.

These tests read ``lib/qkv`` as files (``ast``), so they also catch imports inside
functions, and they run ``import qkv`` in a fresh interpreter, where nothing has
been imported by an earlier test.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"
PACKAGE = LIB / "qkv"

# The dependency rule of conventions.md: masks <- attention <- models. `_checks` (input
# validation) imports nothing from qkv, so every module may use it; masks uses nothing
# else. attention uses masks and modules it is split into (e.g. one per attention
# variant), provided those reach nothing but `_checks` and masks themselves.
# `exercises` compares the reader's code with the library's reference for the concept
# being checked, so it may use any module except the notebook-only ones (plot, quiz).
FOUNDATION = {"_checks", "masks"}
NOT_FOR_EXERCISES = {"plot", "quiz"}
# Modules still holding a private copy of an input check that `_checks` provides;
# lib-attention replaces attention.py's `_check_positive_ints` (issue 10, item 15).
PENDING_DUPLICATE_CHECKS = {"attention"}


def _module_files() -> dict[str, Path]:
    """``{"qkv.masks": path, "qkv.exercises.core": path, ...}`` for every file of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(LIB).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path) -> set[str]:
    """The absolute names of every module ``path`` imports (top level and inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # `from qkv import masks` imports the submodule qkv.masks
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _qkv_graph() -> dict[str, set[str]]:
    """Module -> the qkv modules it imports (only names that are files of the package)."""
    modules = _module_files()
    return {
        name: {m for m in _imports(name, path) if m in modules and m != name}
        for name, path in modules.items()
    }


def _top(module: str) -> str:
    """``qkv.exercises.core`` -> ``exercises``; ``qkv`` -> ``qkv``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "qkv"


def test_every_module_is_reachable_as_an_attribute_in_a_fresh_interpreter():
    public = sorted(
        {_top(m) for m in _module_files() if m != "qkv" and not _top(m).startswith("_")}
    )
    code = (
        "import qkv, types\n"
        f"names = {public!r}\n"
        # qkv.__getattr__ itself, not getattr: an earlier import of another submodule
        # may already have set the attribute and hide a name missing from the list
        "def lazy(n):\n"
        "    try:\n"
        "        return isinstance(qkv.__getattr__(n), types.ModuleType)\n"
        "    except AttributeError:\n"
        "        return False\n"
        "missing = [n for n in names if not lazy(n)]\n"
        "assert not missing, f'add these to _SUBMODULES in qkv/__init__.py: {missing}'\n"
        "hidden = [n for n in names if n not in dir(qkv)]\n"
        "assert not hidden, f'dir(qkv) does not list {hidden}'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(LIB)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_lazy_list_names_only_real_modules():
    import qkv

    files = {_top(m) for m in _module_files() if m != "qkv"}
    stale = sorted(set(qkv._SUBMODULES) - files)
    assert not stale, f"qkv._SUBMODULES lists modules that do not exist: {stale}"
    with pytest.raises(AttributeError, match="has no attribute 'tokenize'"):
        qkv.tokenize  # noqa: B018 (the tokenizers are qkv.tokenization)


def test_no_import_cycles():
    graph = _qkv_graph()
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Top-level names of every qkv module ``start`` imports, directly or not."""
    seen, todo = set(), list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return {_top(m) for m in seen} - {"qkv"}


def test_dependencies_run_one_way():
    graph = _qkv_graph()
    problems = []
    for module, imported in graph.items():
        top, targets = _top(module), {_top(m) for m in imported} - {"qkv"}
        if top == "_checks" and targets - {"_checks"}:
            problems.append(f"{module} imports {sorted(targets)}: _checks imports nothing")
        if top == "masks" and _reach(graph, module) - FOUNDATION:
            problems.append(f"{module} reaches {sorted(_reach(graph, module) - FOUNDATION)}")
        if top == "attention":
            for target in sorted(imported):
                outside = _reach(graph, target) - FOUNDATION
                if _top(target) not in FOUNDATION and outside:
                    problems.append(f"{module} imports {target}, which reaches {sorted(outside)}")
        if top in ("exercises", "experiments") and targets & NOT_FOR_EXERCISES:
            problems.append(f"{module} imports {sorted(targets & NOT_FOR_EXERCISES)}")
    assert not problems, "the dependency rule of conventions.md is broken:\n" + "\n".join(problems)


def test_only_plot_imports_matplotlib_and_nothing_imports_the_book():
    problems = []
    for module, path in _module_files().items():
        tops = {name.split(".")[0] for name in _imports(module, path)}
        if "matplotlib" in tops and _top(module) != "plot":
            problems.append(f"{module} imports matplotlib (only qkv.plot may)")
        if tops & {"chapters", "tests"}:
            problems.append(f"{module} imports {sorted(tops & {'chapters', 'tests'})}")
    assert not problems, "\n".join(problems)


def test_input_checks_are_defined_once():
    """No module keeps a private copy of a check that qkv._checks provides."""
    shared = {"check_int", "check_positive_ints", "check_probability", "check_ids", "check_dim"}
    copies = []
    for module, path in _module_files().items():
        if _top(module) in {"_checks", *PENDING_DUPLICATE_CHECKS}:
            continue
        for node in ast.parse(path.read_text("utf-8")).body:  # module-level functions
            if isinstance(node, ast.FunctionDef) and (
                node.name.lstrip("_") in shared
                or node.name in {"_check_positive", "_check_positive_ints"}
            ):
                copies.append(f"{module}.{node.name} (line {node.lineno})")
    assert not copies, "use qkv._checks instead of: " + ", ".join(copies)


def test_bert_and_models_do_not_import_each_other():
    graph = _qkv_graph()
    assert "qkv.models" not in graph["qkv.bert"]
    assert "qkv.bert" not in graph["qkv.layers"]
    import qkv.bert
    import qkv.models

    assert qkv.models.Bert is qkv.bert.Bert
    assert "__getattr__" not in vars(qkv.models), "re-export with a plain import, visible to dir()"
    assert "Bert" in dir(qkv.models)


# Modules that only re-export names defined elsewhere, for readers of older chapters.
REEXPORT_MODULES = {"qkv.models", "qkv.data", "qkv.tokenization"}
# The top level keeps reusable modules; chapter experiments live in qkv.experiments.
EXPERIMENT_PATTERN = "qkv.experiments.q"


def _reexported_names(module: str) -> set[str]:
    """Names ``module`` only passes on: ``from qkv.x import N as N`` (or ``import qkv.x``)."""
    tree = ast.parse(_module_files()[module].read_text("utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qkv"):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def test_nothing_in_qkv_imports_through_a_reexport_module():
    """``models``, ``data`` and ``tokenization`` keep old names working for readers; the
    library itself imports each name from the module that defines it."""
    offenders = []
    for module, path in _module_files().items():
        if module in REEXPORT_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in REEXPORT_MODULES:
                passed_on = {a.name for a in node.names} & _reexported_names(node.module)
                offenders += [f"{module}: {name} from {node.module}" for name in sorted(passed_on)]
            elif isinstance(node, ast.ImportFrom) and node.module == "qkv":
                offenders += [
                    f"{module}: {a.name}"
                    for a in node.names
                    if f"qkv.{a.name}" in REEXPORT_MODULES - {"qkv.data", "qkv.tokenization"}
                ]
    assert not offenders, "import from the defining module instead:\n" + "\n".join(offenders)


def test_reusable_modules_do_not_import_chapter_experiments():
    offenders = sorted(
        f"{module} imports {target}"
        for module, imported in _qkv_graph().items()
        if not module.startswith("qkv.experiments")
        for target in imported
        if target.startswith(EXPERIMENT_PATTERN)
    )
    assert not offenders, "a reusable module must not depend on a chapter:\n" + "\n".join(offenders)
