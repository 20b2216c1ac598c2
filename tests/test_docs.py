"""The documentation covers the library: every qkv module is on the API page."""

from __future__ import annotations

import re

from .book import ROOT


def test_every_qkv_module_is_on_the_api_page() -> None:
    lib = ROOT / "lib"
    modules = {
        ".".join(p.relative_to(lib).with_suffix("").parts).removesuffix(".__init__")
        for p in (lib / "qkv").rglob("*.py")
        if not p.stem.startswith("_") or p.stem == "__init__"  # private modules are not API
    }
    # A chapter's experiment module is the chapter's own code, read next to its chapter;
    # the page documents the package that runs them.
    modules = {m for m in modules if not m.startswith("qkv.experiments.q")}
    page = (ROOT / "appendix" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. automodule:: +(\S+)", page, flags=re.MULTILINE))
    documented = {m for m in documented if not m.startswith("qkv.experiments.q")}
    assert modules - documented == set(), f"add to appendix/api.md: {sorted(modules - documented)}"
    assert documented - modules == set(), f"no such module: {sorted(documented - modules)}"


def test_bibliography_parses_with_unique_keys() -> None:
    """references.bib is valid BibTeX (a missing brace breaks the whole build) with unique keys."""
    import pybtex.database

    text = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = re.findall(r"^@\w+\{([^,\s]+),", text, flags=re.MULTILINE)
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"duplicate keys in references.bib: {duplicates}"
    entries = pybtex.database.parse_string(text, "bibtex").entries
    assert len(entries) == len(keys)
