"""Execute every chapter into the book's execution cache, two at a time.

    python -m tools.execute_chapters

``jupyter-book build`` executes chapters one after another (myst-nb's cache mode) and
keeps the results in ``_build/.jupyter_cache``. This fills the same cache first, with
one process per core (jupyter-cache's ``local-parallel`` executor), so the build then
reads every chapter from the cache: ``make book`` and ``make test`` run it before the
build, and each chapter is executed once. Chapters already cached are not rerun.
Prints each chapter's execution time; exits 1, with the traceback, if one fails.
"""

from __future__ import annotations

import os
import sys

from jupyter_cache import get_cache
from jupyter_cache.executors import load_executor

from tests.book import ROOT, chapter_paths

CACHE = ROOT / "_build" / ".jupyter_cache"
CELL_TIMEOUT_S = 120  # as `execute: timeout` in _config.yml


def execute_chapters() -> dict[str, float]:
    """Execute the chapters not cached yet; return every chapter's execution seconds."""
    cache = get_cache(str(CACHE))
    for path in chapter_paths():
        cache.add_nb_to_project(str(path))
    result = load_executor("local-parallel", cache).run_and_cache(timeout=CELL_TIMEOUT_S)
    if result.errored or result.excepted:
        reports = []
        for uri in sorted(result.errored + result.excepted):
            record = cache.get_project_record(uri)
            reports.append(f"--- {uri}\n{(record.traceback or '')[-4000:]}")
        raise RuntimeError("chapters failed to execute:\n" + "\n".join(reports))
    seconds = {}
    for path in chapter_paths():
        record = cache.get_cached_project_nb(str(path))
        if record is None:
            raise RuntimeError(f"{path} was not cached")
        seconds[str(path.relative_to(ROOT))] = float(record.data.get("execution_seconds", 0.0))
    return seconds


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        times = execute_chapters()
    except RuntimeError as err:
        print(err, file=sys.stderr)
        sys.exit(1)
    for path, seconds in sorted(times.items(), key=lambda item: -item[1]):
        print(f"{seconds:6.1f} s  {path}")
