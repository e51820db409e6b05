"""The access-log timeline as inline SVG, drawn server-side (no chart library, CSP-safe).

Stacked bars, one per month, one colour per type of accessor; the template also renders the
same numbers as a table for screen readers and for anyone who prefers one. The bars, month labels
and table rows come as markup built here with ``format_html_join`` (escaped like the template's
``{{ }}``): nested template loops with a filter per attribute were a good part of the page's
render time (issue 18).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.formats import date_format
from django.utils.html import format_html_join

from audit.models import AccessEvent
from audit.selectors import LogSummary

WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 40, 28, 10


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


def _nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^n at or above ``value`` (axis tops people read at a glance)."""
    for power in range(0, 12):
        for step in (1, 2, 5):
            candidate = step * 10**power
            if candidate >= value:
                return max(candidate, 1)
    return value


def timeline_chart(summary: LogSummary) -> dict:
    months = summary.months
    totals = [sum(series[i] for series in summary.series.values()) for i in range(len(months))]
    top = _nice_max(max(totals or [0]))
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(months), 1)
    labels = dict(AccessEvent.ActorType.choices)
    bars: list[Bar] = []
    for i, month in enumerate(months):
        y = TOP + plot_h
        for actor_type, counts in summary.series.items():
            n = counts[i]
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            bars.append(
                Bar(LEFT + i * slot + slot * 0.15, round(y, 1), round(slot * 0.7, 1), round(h, 1), f"bar-{actor_type}",
                    f"{date_format(month, 'M Y')}: {n} × {labels[actor_type]}")
            )
    label_y = HEIGHT - 8
    month_labels = [(LEFT + i * slot + slot / 2, date_format(m, "M")) for i, m in enumerate(months)]
    table = [(m, [summary.series[t][i] for t in summary.series], totals[i]) for i, m in enumerate(months)]
    return {
        "bars_svg": format_html_join(
            "", '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>',
            ((b.css, b.x, b.y, b.width, b.height, b.title) for b in bars),
        ),
        "labels_svg": format_html_join(
            "", '<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>',
            ((x, label_y, label) for x, label in month_labels),
        ),
        "table_html": format_html_join(
            "", '<tr><th scope="row">{}</th>{}<td>{}</td></tr>',
            (
                (date_format(m, "YEAR_MONTH_FORMAT"), format_html_join("", "<td>{}</td>", ((n,) for n in counts)), total)
                for m, counts, total in table
            ),
        ),
        "width": WIDTH,
        "height": HEIGHT,
        "bars": bars,
        "axis_y": TOP + plot_h,
        "top": top,
        "top_y": TOP,
        "left": LEFT,
        "month_labels": month_labels,
        "legend": [(t, labels[t]) for t in summary.series],
        "table": table,
        "empty": not any(totals),
    }
