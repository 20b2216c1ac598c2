"""Every "Used in: Qnn" line of a qkv docstring matches what the chapters really use.

Two directions, both read from the files (the chapters' code cells are parsed
with :mod:`ast`, not run):

- every ``Qnn`` named in a "Used in:" paragraph is a chapter that exists and
  that uses the name (an import of it, or an attribute access that reaches it,
  e.g. ``qkv.masks.key_mask``); for a module docstring, any name of the module;
- every public qkv function or class that a chapter uses has a "Used in:" line
  naming that chapter.

Names whose "Used in:" says "every chapter" (``qkv.device``, the quiz module)
are left alone; a module docstring needs no "Used in:" line, but the one it has
must be right. When chapters land or change, resync every line with::

    python -m tools.used_in

which rewrites each "Used in:" paragraph as ``Used in: Q3, Q8.`` (other
references in it, such as ``:func:`qkv.train.train```, are kept) and adds one
to each used name that lacks it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib"
PACKAGE = LIB / "qkv"
CHAPTERS = ROOT / "chapters"

_CHAPTER_FILE = re.compile(r"^q(\d+)_\w+\.ipynb$")
_Q_REF = re.compile(r"^Q(\d+)\b(?:\s*\([^)]*\))?$")  # "Q8" or "Q8 (attention/q08_padding_mask)"
_EVERY = "every chapter"
_WIDTH = 96  # wrap rewritten paragraphs before ruff's 100 columns

if str(LIB) not in sys.path:  # `python -m tools.used_in` from the repository root
    sys.path.insert(0, str(LIB))


# --- what the chapters use -------------------------------------------------------------


def chapter_numbers() -> dict[int, Path]:
    """``{8: chapters/attention/q08_padding_mask.ipynb, ...}``."""
    found = {}
    for path in sorted(CHAPTERS.glob("*/*.ipynb")):
        match = _CHAPTER_FILE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def _code_cells(path: Path) -> list[str]:
    """The chapter's code cells, IPython magics and shell escapes dropped."""
    cells = []
    for cell in json.loads(path.read_text("utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        cells.append("\n".join("" if re.match(r"\s*[%!]", ln) else ln for ln in lines))
    return cells


def _qkv_object(value: object) -> tuple[str, str] | None:
    """``(defining module, name)`` for a public qkv function or class, else None."""
    if not (inspect.isfunction(value) or inspect.isclass(value)):
        return None
    module = getattr(value, "__module__", "") or ""
    name = getattr(value, "__qualname__", "")
    if not (module == "qkv" or module.startswith("qkv.")) or "." in name or name.startswith("_"):
        return None
    return module, name


def _attribute(value: object, attr: str) -> object:
    """``getattr(value, attr)``, importing a submodule first (``qkv.experiments.q21_...``)."""
    if isinstance(value, ModuleType) and not hasattr(value, attr):
        try:
            importlib.import_module(f"{value.__name__}.{attr}")
        except ImportError:
            pass
    return getattr(value, attr)


def _resolve(module: str, attrs: list[str]) -> tuple[set[str], set[tuple[str, str]]]:
    """Follow ``module.attrs[0].attrs[1]...``: the modules passed, the qkv object reached."""
    modules, objects = {module}, set()
    try:
        value: object = importlib.import_module(module)
    except ImportError:
        return set(), set()
    for attr in attrs:
        try:
            value = _attribute(value, attr)
        except AttributeError:
            break
        if isinstance(value, ModuleType):
            modules.add(value.__name__)
            continue
        found = _qkv_object(value)
        if found:
            objects.add(found)
        break
    return {m for m in modules if m.startswith("qkv")}, objects


def _attribute_chain(node: ast.AST) -> tuple[str, list[str]] | None:
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id, attrs[::-1]) if isinstance(node, ast.Name) else None


def chapter_usage(path: Path) -> tuple[set[str], set[tuple[str, str]]]:
    """The qkv modules and the public qkv ``(module, name)`` objects a chapter uses."""
    modules: set[str] = set()
    objects: set[tuple[str, str]] = set()
    bound: dict[str, str] = {}  # local name -> qkv module it is bound to
    for source in _code_cells(path):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "qkv":
                        modules.add(alias.name)
                        if alias.asname:
                            bound[alias.asname] = alias.name
                        else:
                            bound["qkv"] = "qkv"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "qkv":
                for alias in node.names:
                    found_modules, found = _resolve(node.module, [alias.name])
                    modules |= found_modules
                    objects |= found
                    try:
                        value = _attribute(importlib.import_module(node.module), alias.name)
                    except AttributeError:
                        value = None
                    modules |= {value.__name__} if isinstance(value, ModuleType) else set()
                    if isinstance(value, ModuleType):  # from qkv import masks
                        bound[alias.asname or alias.name] = value.__name__
        for node in ast.walk(tree):
            chain = _attribute_chain(node) if isinstance(node, ast.Attribute) else None
            if chain and chain[0] in bound:
                found_modules, found = _resolve(bound[chain[0]], chain[1])
                modules |= found_modules
                objects |= found
    return modules, objects


def all_usage() -> tuple[dict[str, set[int]], dict[tuple[str, str], set[int]]]:
    """``module -> chapters`` and ``(module, name) -> chapters`` over every chapter."""
    by_module: dict[str, set[int]] = defaultdict(set)
    by_object: dict[tuple[str, str], set[int]] = defaultdict(set)
    for number, path in chapter_numbers().items():
        modules, objects = chapter_usage(path)
        for module in modules:
            by_module[module].add(number)
        for obj in objects:
            by_object[obj].add(number)
            by_module[obj[0]].add(number)
    return by_module, by_object


# --- what the docstrings say -------------------------------------------------------------


@dataclass
class Docstring:
    """One module-level docstring of qkv, with its "Used in:" paragraph if it has one."""

    path: Path
    module: str
    name: str | None  # None for the module's own docstring
    start: int  # 0-based line of the opening quotes
    end: int  # 0-based line of the closing quotes
    used_in: tuple[int, int] | None  # 0-based [first, last] lines of the paragraph
    text: str  # the paragraph, from "Used in:" on, joined into one line

    @property
    def label(self) -> str:
        return self.module if self.name is None else f"{self.module}.{self.name}"

    def chapters(self) -> list[int]:
        return [int(m.group(1)) for m in map(_Q_REF.match, self._items()) if m]

    def extras(self) -> list[str]:
        return [item for item in self._items() if not _Q_REF.match(item)]

    def exempt(self) -> bool:
        return _EVERY in self.text

    def _items(self) -> list[str]:
        body = self.text.removeprefix("Used in:").strip().rstrip(".")
        items = re.split(r",\s*(?![^(]*\))", body)  # commas outside parentheses
        return [re.sub(r"^and\s+", "", item.strip()) for item in items if item.strip()]


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def docstrings() -> list[Docstring]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if any(part.startswith("_") for part in module.split(".")[1:]):
            continue
        lines = path.read_text("utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        nodes: list[tuple[str | None, ast.AST]] = [(None, tree)]
        nodes += [
            (node.name, node)
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_")
        ]
        for name, node in nodes:
            body = node.body
            if not (
                body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            ):
                continue
            if not isinstance(body[0].value.value, str):
                continue
            start, end = body[0].lineno - 1, body[0].end_lineno - 1
            used_in, text = None, ""
            for i in range(start, end + 1):
                if "Used in:" in lines[i]:
                    last = i
                    while last + 1 < end and lines[last + 1].strip():
                        last += 1
                    if last + 1 == end and lines[end].strip() not in ('"""', "'''"):
                        last = end  # the paragraph runs into the closing quotes
                    used_in = (i, last)
                    joined = " ".join(ln.strip() for ln in lines[i : last + 1])
                    text = joined[joined.index("Used in:") :].removesuffix('"""').strip()
                    break
            found.append(Docstring(path, module, name, start, end, used_in, text))
    return found


# --- comparing the two ---------------------------------------------------------------------


def _wanted(doc: Docstring, by_module, by_object) -> list[int]:
    if doc.name is None:
        return sorted(by_module.get(doc.module, set()))
    return sorted(by_object.get((doc.module, doc.name), set()))


def _new_paragraph(doc: Docstring, chapters: list[int]) -> str | None:
    items = [f"Q{n}" for n in chapters] + doc.extras()
    return f"Used in: {', '.join(items)}." if items else None


def problems() -> list[str]:
    """One line per docstring to change, ``path:line: what to write``."""
    by_module, by_object = all_usage()
    existing = chapter_numbers()
    module_exempt = {d.module for d in docstrings() if d.name is None and d.exempt()}
    out = []
    for doc in docstrings():
        if doc.exempt() or doc.module in module_exempt:
            continue
        wanted = _wanted(doc, by_module, by_object)
        where = f"{doc.path.relative_to(ROOT)}:{(doc.used_in or (doc.end, 0))[0] + 1}"
        if doc.used_in is None:
            if wanted and doc.name is not None:  # a module docstring need not have one
                new = _new_paragraph(doc, wanted)
                out.append(f"{where}: {doc.label} has no 'Used in:' line; add `{new}`")
            continue
        named = doc.chapters()
        if named == wanted and len(set(named)) == len(named):
            continue
        missing = [f"Q{n}" for n in named if n not in existing]
        unused = [f"Q{n}" for n in named if n in existing and n not in wanted]
        unlisted = [f"Q{n}" for n in wanted if n not in named]
        why = (
            "; ".join(
                part
                for part in (
                    missing and f"no chapter {', '.join(missing)} exists",
                    unused and f"{', '.join(unused)} never use it",
                    unlisted and f"{', '.join(unlisted)} use it but are not listed",
                )
                if part
            )
            or "order"
        )
        new = _new_paragraph(doc, wanted) or "(remove the line)"
        out.append(f"{where}: {doc.label}: {why}; write `{new}`")
    return out


def test_used_in_lines_match_the_chapters():
    found = problems()
    assert not found, (
        "Used in: lines out of sync with the chapters (run `python -m tools.used_in`):\n"
        + "\n".join(found)
    )


# --- the fixer ---------------------------------------------------------------------------------
