"""Bar charts drawn on the server as inline SVG: the pages run no script.

A chart is a picture of a table the page also shows; its ``<title>`` and ``<desc>`` say so to
screen readers. A withheld count (``"<5"``) is drawn as no bar, with its mark as the label,
never as a length that would give the number away.

A right-to-left page (Arabic) gets the chart mirrored: labels on the right, bars growing to the
left. Each text says its own direction rather than inheriting the page's, since ``text-anchor``
counts from where the text starts: labels in the page's direction, counts always left to right
(in Latin digits, as :func:`~exchange.web.languages.number` writes them).
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from exchange.disclosure import Published
from exchange.web.languages import number

WIDTH = 640
LABEL = 300  # the width of the labels' column
ROW = 22
BAR = 14


def bars(
    chart_id: str,
    title: str,
    desc: str,
    rows: Sequence[tuple[str, Published]],
    direction: str = "ltr",
) -> Markup:
    """A horizontal bar chart of ``rows`` (label, published count) as inline SVG, laid out for a
    page written in ``direction`` (``ltr`` or ``rtl``)."""
    rtl = direction == "rtl"
    largest = max((v for _, v in rows if isinstance(v, int)), default=0) or 1
    room = WIDTH - LABEL - 60
    height = ROW * len(rows) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" style="max-width:{WIDTH}px" '
        f'direction="{"rtl" if rtl else "ltr"}">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>',
    ]
    # Where the bars start, and which way they grow: x is mirrored on a right-to-left page.
    axis = WIDTH - LABEL if rtl else LABEL
    away = -1 if rtl else 1
    for index, (label, value) in enumerate(rows):
        y = 4 + index * ROW
        # The label ends next to the bars: its end is its left on a right-to-left page.
        parts.append(
            f'<text x="{axis - away * 8}" y="{y + BAR - 2}" text-anchor="end" '
            f'direction="{"rtl" if rtl else "ltr"}" font-size="12" '
            f'fill="#1b1f24">{escape(label)}</text>'
        )
        length = round(room * value / largest) if isinstance(value, int) else 0
        if length:
            left = axis - length if rtl else axis
            parts.append(
                f'<rect x="{left}" y="{y}" width="{length}" height="{BAR}" fill="#0b5394"/>'
            )
        shown = number(value) if isinstance(value, int) else str(value)
        parts.append(
            f'<text x="{axis + away * (length + 6)}" y="{y + BAR - 2}" '
            f'text-anchor="{"end" if rtl else "start"}" direction="ltr" unicode-bidi="embed" '
            f'font-size="12" fill="#1b1f24">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it is escaped above
