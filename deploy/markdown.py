"""Generated sections of the markdown docs (benchmark tables, the dashboard panel list)."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, section: str, title: str) -> None:
    """Replace a benchmark's section of ``path`` (marked by its first and last line), or append it."""
    start, end = section.splitlines()[0], section.splitlines()[-1]
    text = path.read_text() if path.exists() else "# Measured results\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n" + section + "\n"
    path.write_text(text)
