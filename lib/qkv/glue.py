"""Numbers from a chapter's cells into its prose: ``glue`` for myst-nb's ``{glue:text}``.

A chapter computes a number, glues it under a name, and its Markdown writes
``{glue:text}`name``` where the number belongs, so the page always says what the
code printed. Where myst-nb is not installed (a notebook opened on Colab) gluing
does nothing, and the cell's printed output still shows the number.
"""

from __future__ import annotations

from typing import Any

__all__ = ["glue"]


def glue(name: str, value: Any, fmt: str = "") -> str:
    """Store ``format(value, fmt)`` under ``name`` for the prose; return that text.

    ``fmt`` is a format spec (``".2f"``, ``".0%"``, ``","``); the empty spec glues
    ``str(value)``. The text is glued, not the value, so the page shows exactly the
    digits the chapter chose, and the same text can be printed next to it.
    Used in: every chapter that quotes its own measurements.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"glue: name must be a non-empty str, got {name!r}")
    text = format(value, fmt)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # no myst-nb (e.g. Colab): the printed cell output carries it
        return text
    myst_glue(name, text, display=False)
    return text
