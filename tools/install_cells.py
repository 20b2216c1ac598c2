"""Rewrite every chapter's first cell: the guarded Colab install of qkv and its extras.

    python -m tools.install_cells

Run after changing the repository URL in ``_config.yml`` or when a chapter starts
importing a pinned extra (``transformers``); ``tests/book.py`` defines the cell and
``tests/test_chapters.py`` fails, naming the chapter, until every notebook has it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.book import (
    ROOT,
    cell_text,
    chapter_extras,
    chapter_paths,
    install_cell_source,
    repository_url,
)


def write_install_cells() -> list[Path]:
    """Make every chapter's first cell the install cell for _config.yml's URL and the
    chapter's imports (after a fork, or when a chapter starts importing transformers)."""
    changed = []
    for path in chapter_paths():
        source = install_cell_source(repository_url(), chapter_extras(path))
        lines = source.splitlines(keepends=True)
        nb = json.loads(path.read_text(encoding="utf-8"))
        first = nb["cells"][0]
        if first["cell_type"] != "code" or "find_spec" not in cell_text(first):
            raise ValueError(f"{path}: the first cell is not the install cell")
        if first["source"] != lines:
            first["source"] = lines
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in write_install_cells():
        print(f"updated {path.relative_to(ROOT)}")
