"""Rewrite every "Used in:" paragraph of ``lib/qkv`` from the chapters that use each name.

    python -m tools.used_in

``tests/test_used_in.py`` finds which chapters use which module, function and class
(and fails when a docstring's line disagrees); this script writes the lines it wants.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from tests.test_used_in import (
    _WIDTH,
    ROOT,
    Docstring,
    _new_paragraph,
    _wanted,
    all_usage,
    docstrings,
    problems,
)


def _wrap(prefix: str, indent: str, paragraph: str) -> list[str]:
    words, lines, line = paragraph.split(" "), [], prefix
    for word in words:
        candidate = f"{line} {word}" if line.strip() else f"{line}{word}"
        if len(candidate) > _WIDTH and line.strip():
            lines.append(line)
            line = f"{indent}{word}"
        else:
            line = candidate
    lines.append(line)
    return lines


def _tidy(lines: list[str]) -> list[str]:
    """Join a docstring left as its summary and a lone closing quote (ruff's format)."""
    out: list[str] = []
    for line in lines:
        previous = out[-1] if out else ""
        opens = previous.lstrip().startswith('"""') and previous.count('"""') == 1
        if line.strip() == '"""' and opens and len(previous) + 3 <= 100:
            out[-1] = previous + '"""'
        else:
            out.append(line)
    return out


def fix() -> list[str]:
    """Rewrite every "Used in:" paragraph from the chapters; return the files changed."""
    by_module, by_object = all_usage()
    module_exempt = {d.module for d in docstrings() if d.name is None and d.exempt()}
    edits: dict[Path, list[tuple[Docstring, list[int]]]] = defaultdict(list)
    for doc in docstrings():
        if doc.exempt() or doc.module in module_exempt:
            continue
        wanted = _wanted(doc, by_module, by_object)
        if doc.used_in is None and (not wanted or doc.name is None):
            continue
        if doc.used_in is not None and doc.chapters() == wanted:
            continue
        edits[doc.path].append((doc, wanted))
    for path, changes in edits.items():
        lines = path.read_text("utf-8").splitlines()
        # bottom-up, so earlier line numbers stay valid
        for doc, wanted in sorted(changes, key=lambda c: -c[0].start):
            paragraph = _new_paragraph(doc, wanted)
            if doc.used_in is not None:
                first, last = doc.used_in
                head = lines[first][: lines[first].index("Used in:")]
                indent = re.match(r"\s*", lines[first]).group(0)
                closing = last == doc.end  # the closing quotes end the paragraph's last line
                if paragraph is None:
                    new = [head.rstrip()] if head.strip() else []
                    if not new and first > doc.start and not lines[first - 1].strip():
                        first -= 1  # drop the blank line before it too
                else:
                    new = _wrap(head, indent, paragraph)
                if closing:
                    new = [*new[:-1], new[-1] + '"""'] if new else [indent + '"""']
                lines[first : last + 1] = new
            else:
                indent = re.match(r"\s*", lines[doc.end]).group(0)
                if lines[doc.end].strip() == '"""':
                    lines[doc.end : doc.end] = _wrap(indent, indent, paragraph)
                else:  # a one-line docstring: open it up
                    body = lines[doc.end].rstrip().removesuffix('"""')
                    indent = re.match(r"\s*", lines[doc.start]).group(0)
                    lines[doc.end : doc.end + 1] = [
                        body,
                        "",
                        *_wrap(indent, indent, paragraph),
                        indent + '"""',
                    ]
        path.write_text("\n".join(_tidy(lines)) + "\n", "utf-8")
    return sorted(str(p.relative_to(ROOT)) for p in edits)


if __name__ == "__main__":
    changed = fix()
    print("rewrote Used in: lines in", ", ".join(changed) if changed else "no file")
    left = problems()
    print("\n".join(left) if left else "every Used in: line matches the chapters")
