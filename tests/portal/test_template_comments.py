"""Django's ``{# ... #}`` comments end at the line: one spread over two lines is printed on the
page as text (it was, above the viewer). Multi-line comments use ``{% comment %}``."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_no_template_comment_spans_lines():
    broken = [
        f"{path.relative_to(TEMPLATES)}:{number}"
        for path in sorted(TEMPLATES.rglob("*.html")) + sorted(TEMPLATES.rglob("*.txt"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.count("{#") > line.count("#}")
    ]
    assert not broken, f"multi-line {{# #}} comments (use {{% comment %}}): {broken}"
