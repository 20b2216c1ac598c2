"""The chapters' experiments: one module per chapter, ``qNN_<chapter stem>.py``.

A chapter's evidence that depends on a seed lives here, not in the notebook and not
in a copy: the chapter calls these functions with its one seed and checks the claim,
and ``benchmarks/robustness.py`` calls the *same* functions over many seeds and
stores the values in ``robustness/qNN.json`` (package data, so a chapter opened on
Colab can quote its spread too). Each module holds

- its constants (sizes, steps, learning rates),
- one function per claimed number, decorated with :func:`experiment` so that it
  gives the same number whatever the caller's torch thread count and leaves the
  caller's random state alone,
- ``CLAIMS``: a :func:`claims` table of :class:`Claim` s (text, margin, seeds).

In the chapter::

    from qkv.experiments import q19_warmup as exp
    gap = exp.warmup_gap(seed=0)
    exp.CLAIMS["q19-warmup-rescues-post-ln"].check(gap)       # the declared margin
    lo_hi = exp.CLAIMS["q19-warmup-rescues-post-ln"].spread().range(".2f")  # over seeds

``tests/test_robustness.py`` checks that every claim is checked by its chapter, that
every stored value satisfies the margin, and that the page of spreads is up to date.
"""

from __future__ import annotations

import functools
import importlib
import json
import operator
import pkgutil
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from qkv import reproducible

__all__ = ["Claim", "Spread", "claims", "experiment", "modules", "ROBUSTNESS_DIR"]

ROBUSTNESS_DIR = Path(__file__).with_name("robustness")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
F = TypeVar("F", bound=Callable[..., Any])


def experiment(fn: F) -> F:
    """Run ``fn`` under :func:`qkv.reproducible`: one torch thread, caller's state restored.

    Training results change with the number of threads a matrix product is split
    over; pinning one thread makes an experiment print the same numbers in
    ``make book``, ``make test``, Jupyter and Colab on any CPU thread count. The
    function still seeds its own generators from its ``seed`` argument.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with reproducible():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class Spread:
    """The values of one claim over its seeds (from ``robustness/qNN.json``)."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def range(self, fmt: str = ".3g") -> str:
        """``"0.50–0.54"``: min and max with ``fmt``, for the prose (one value if equal)."""
        lo, hi = format(self.min, fmt), format(self.max, fmt)
        return lo if lo == hi else f"{lo}–{hi}"


@dataclass(frozen=True)
class Claim:
    """One seed-dependent claim: the chapter checks ``measure(seed) <op> margin``.

    ``measure`` is a function of the seed alone (usually a ``lambda`` over one of the
    module's experiment functions); ``benchmarks/robustness.py`` calls it for every
    seed in ``seeds``; the chapter runs ``chapter_seed`` and calls :meth:`check`.
    """

    id: str  # unique across the book, starts with the chapter number: "q03-reverse-gap"
    text: str  # the claim in words, as the chapter states it
    measure: Callable[[int], float]
    op: str  # ">", ">=", "<" or "<="
    margin: float
    seeds: tuple[int, ...] = field(default_factory=lambda: tuple(range(10)))
    chapter_seed: int = 0

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"{self.id}: op must be one of {sorted(OPS)}, got {self.op!r}")
        if self.chapter_seed not in self.seeds:
            raise ValueError(f"{self.id}: chapter_seed {self.chapter_seed} is not in seeds")

    @property
    def number(self) -> str:
        """``"q03"`` for ``"q03-reverse-gap"``."""
        return self.id.split("-", 1)[0]

    def holds(self, value: float) -> bool:
        """Does ``value <op> margin`` hold?"""
        return OPS[self.op](float(value), self.margin)

    def check(self, value: float) -> float:
        """Assert the claim for the chapter's measured ``value``; return the value.

        Raises ``AssertionError`` naming the claim, the value and the margin, so a
        chapter that no longer supports its prose fails the build.
        """
        if not self.holds(value):
            raise AssertionError(
                f"{self.id}: {self.text}: measured {float(value):.4g}, "
                f"the claim needs {self.op} {self.margin:g}"
            )
        return float(value)

    def declaration(self) -> dict[str, Any]:
        """What a stored record must repeat for its values to belong to this claim."""
        return {
            "text": self.text,
            "op": self.op,
            "margin": self.margin,
            "seeds": list(self.seeds),
            "chapter_seed": self.chapter_seed,
        }

    def spread(self) -> Spread:
        """The stored values over ``seeds`` (``benchmarks/robustness.py`` writes them).

        Raises ``LookupError`` when the stored record is missing or was made for
        another declaration (rerun ``python benchmarks/robustness.py qNN``).
        """
        record = _records(self.number).get(self.id)
        if record is None or any(record.get(k) != v for k, v in self.declaration().items()):
            raise LookupError(
                f"{self.id}: no up-to-date spread; run `python benchmarks/robustness.py "
                f"{self.number}`"
            )
        return Spread(tuple(record["seeds"]), tuple(record["values"]))


def claims(*items: Claim) -> dict[str, Claim]:
    """A module's claim table, by id (ids unique, in the chapter's order)."""
    table: dict[str, Claim] = {}
    for claim in items:
        if claim.id in table:
            raise ValueError(f"duplicate claim id {claim.id!r}")
        table[claim.id] = claim
    return table


@functools.cache
def _records(number: str) -> dict[str, dict[str, Any]]:
    path = ROBUSTNESS_DIR / f"{number}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def modules() -> Iterator[ModuleType]:
    """Every chapter's experiment module, in chapter order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("q"):
            yield importlib.import_module(f"{__name__}.{info.name}")
