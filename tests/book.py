"""Facts about the book's files that several test modules need."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def chapter_paths() -> list[Path]:
    """Every chapter notebook under chapters/, sorted."""
    paths = (ROOT / "chapters").rglob("*.ipynb")
    return sorted(p for p in paths if ".ipynb_checkpoints" not in p.parts)


def toc_files() -> list[str]:
    """The files _toc.yml lists under its parts (without suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def repository_url() -> str:
    """The one repository URL, from _config.yml."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"]


def cell_text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def english_title(notebook: Path) -> str:
    """The chapter's English title: the first line of its first markdown cell."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    first_md = next(c for c in cells if c["cell_type"] == "markdown")
    return cell_text(first_md).splitlines()[0].removeprefix("# ").strip()


# Modules a chapter may import beyond the standard library and qkv: those that qkv's own
# dependencies bring (pyproject.toml), those every Jupyter has, and the extras below,
# which the install cell adds for the chapters that import them.
QKV_BRINGS = {"torch", "numpy", "matplotlib", "jupyterquiz", "jieba"}
JUPYTER_BRINGS = {"IPython", "ipykernel"}
EXTRAS = {"transformers": "transformers"}  # module -> distribution, pinned in requirements.txt


def pinned(distribution: str) -> str:
    """The line ``name==version`` that requirements.txt pins ``distribution`` to."""
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(distribution)}==[^\s#]+", text, flags=re.MULTILINE)
    if not found:
        raise ValueError(f"requirements.txt pins no version of {distribution!r}")
    return found.group(0)


def chapter_imports(notebook: Path) -> set[str]:
    """The top-level modules the chapter's code cells import (the install cell aside)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = "\n".join(cell_text(c) for c in cells[1:] if c["cell_type"] == "code")
    return set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", code, flags=re.MULTILINE))


def chapter_extras(notebook: Path) -> list[str]:
    """The pinned requirements the chapter needs beyond qkv, e.g. ``transformers==5.24.0``."""
    return [pinned(dist) for module, dist in EXTRAS.items() if module in chapter_imports(notebook)]


def install_cell_source(url: str, extras: list[str] | tuple[str, ...] = ()) -> str:
    """The first cell of every chapter: install what the chapter needs when it is missing.

    qkv from the repository (with torch, numpy, matplotlib and the quizzes), and the
    chapter's ``extras`` (pinned, e.g. ``transformers==5.24.0``) when they are missing or
    at another version. Hidden in the site (tag ``remove-cell``); it matters on Colab or
    Binder, where a notebook arrives alone. The URL is the one of _config.yml; a fork
    changes both. When pip fails, the cell stops with what to do, so that a reader does
    not meet a confusing ``ModuleNotFoundError: qkv`` in every later cell.
    """
    needs = ", ".join(["qkv (the book's library)", *extras])
    requirements = "".join(f'    "{e.split("==")[0]}": "{e}",\n' for e in extras)
    return f'''# On Colab or in a fresh kernel: install what this chapter needs if it is missing:
# {needs}.
import importlib.metadata
import importlib.util
import subprocess
import sys

QKV_REPOSITORY = "{url}"  # as in _config.yml
REQUIREMENTS = {{  # module: what pip installs
    "qkv": f"qkv @ git+{{QKV_REPOSITORY}}",
{requirements}}}


def _missing(module: str, requirement: str) -> bool:
    if importlib.util.find_spec(module) is None:
        return True
    version = requirement.partition("==")[2]
    return bool(version) and importlib.metadata.version(module) != version


_install = [r for m, r in REQUIREMENTS.items() if _missing(m, r)]
if _install:
    print("Installing", ", ".join(_install), "(about a minute)...")
    _pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", *_install],
        capture_output=True,
        text=True,
    )
    if _pip.returncode != 0:
        raise SystemExit(
            "Could not install this chapter's requirements; the other cells need them, so "
            "stop here.\\nWhat to do: check that this runtime can reach the internet and "
            f"{{QKV_REPOSITORY}}, then run this cell again; or install them yourself with\\n"
            "    %pip install " + " ".join(f'"{{r}}"' for r in _install) + "\\n"
            "and restart the kernel. (A fork of the book sets its own URL in _config.yml "
            "and in this cell.) pip said:\\n" + _pip.stderr[-1500:]
        )
    importlib.invalidate_caches()
    print("Installed.")'''
