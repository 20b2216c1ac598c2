"""Facts about the book's files that several test modules need."""

from __future__ import annotations

import json
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


def install_cell_source(url: str) -> str:
    """The first cell of every chapter: install qkv (with its quizzes) when it is missing.

    Hidden in the site (tag ``remove-cell``); it matters on Colab or Binder, where a
    notebook arrives alone. The URL is the one of _config.yml; a fork changes both.
    """
    return f'''# On Colab or in a fresh kernel: install qkv, the book's library, if it is missing.
import importlib.util
import subprocess
import sys

QKV_REPOSITORY = "{url}"  # as in _config.yml
if importlib.util.find_spec("qkv") is None:
    pip = [sys.executable, "-m", "pip", "install", "--quiet", f"qkv @ git+{{QKV_REPOSITORY}}"]
    result = subprocess.run(pip, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"Could not install qkv from {{QKV_REPOSITORY}}. Is the address reachable? A fork "
            "of the book sets its own URL in _config.yml and in this cell. pip said:\\n"
            + result.stderr[-1000:]
        )
    importlib.invalidate_caches()'''


def write_install_cells() -> list[Path]:
    """Make every chapter's first cell the install cell for _config.yml's URL (after a fork)."""
    source = install_cell_source(repository_url()).splitlines(keepends=True)
    changed = []
    for path in chapter_paths():
        nb = json.loads(path.read_text(encoding="utf-8"))
        first = nb["cells"][0]
        if first["cell_type"] != "code" or "find_spec" not in cell_text(first):
            raise ValueError(f"{path}: the first cell is not the install cell")
        if first["source"] != source:
            first["source"] = source
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":  # python -m tests.book: rewrite the install cells
    for path in write_install_cells():
        print(f"updated {path.relative_to(ROOT)}")
