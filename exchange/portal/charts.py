"""Bar charts drawn on the server as inline SVG: the pages run no script.

A chart is a picture of a table the page also shows; its ``<title>`` and ``<desc>`` say so to
screen readers. A withheld count (``"<5"``) is drawn as no bar, with its mark as the label,
never as a length that would give the number away.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from exchange.disclosure import Published

WIDTH = 640
LABEL = 300  # the width of the labels' column
ROW = 22
BAR = 14


def bars(chart_id: str, title: str, desc: str, rows: Sequence[tuple[str, Published]]) -> Markup:
    """A horizontal bar chart of ``rows`` (label, published count) as inline SVG."""
    largest = max((v for _, v in rows if isinstance(v, int)), default=0) or 1
    room = WIDTH - LABEL - 60
    height = ROW * len(rows) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" style="max-width:{WIDTH}px">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>',
    ]
    for index, (label, value) in enumerate(rows):
        y = 4 + index * ROW
        parts.append(
            f'<text x="{LABEL - 8}" y="{y + BAR - 2}" text-anchor="end" font-size="12" '
            f'fill="#1b1f24">{escape(label)}</text>'
        )
        length = round(room * value / largest) if isinstance(value, int) else 0
        if length:
            parts.append(
                f'<rect x="{LABEL}" y="{y}" width="{length}" height="{BAR}" fill="#0b5394"/>'
            )
        parts.append(
            f'<text x="{LABEL + length + 6}" y="{y + BAR - 2}" font-size="12" '
            f'fill="#1b1f24">{escape(str(value))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it is escaped above
