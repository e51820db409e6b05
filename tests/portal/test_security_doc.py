"""The security baseline the code cites ("docs/security.md §16") is in the repository, item by item."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"docs/security\.md §(\d+)")
SOURCES = ("accounts", "audit", "consent", "core", "exports", "flags", "imaging", "portal", "scripts", "templates", "tests")


def _items() -> set[int]:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    return {int(n) for n in re.findall(r"^(\d+)\. ", text, flags=re.MULTILINE)}


def test_every_cited_item_of_the_security_baseline_exists_in_docs_security_md():
    items = _items()
    assert len(items) >= 24
    cited: dict[int, list[str]] = {}
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".html", ".txt", ".sh", ".md"} and path.is_file():
                for n in CITATION.findall(path.read_text(encoding="utf-8", errors="replace")):
                    cited.setdefault(int(n), []).append(str(path.relative_to(ROOT)))
    assert cited, "the code cites the baseline by item number"
    missing = {n: where[:3] for n, where in cited.items() if n not in items}
    assert not missing, f"cited items absent from docs/security.md: {missing}"
