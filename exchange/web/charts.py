"""Charts drawn on the server as inline SVG: the pages run no script. Bars for counts by
label (the portal's public figures), columns for a series in time (a gateway console's
exchanges per minute).

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


COLUMN_HEIGHT = 120


def columns(
    chart_id: str,
    title: str,
    desc: str,
    values: Sequence[tuple[str, int, int]],
    direction: str = "ltr",
) -> Markup:
    """A column chart of a series (label, count, of which marked) as inline SVG: one column per
    entry in order (time runs in the page's direction), the marked part (failures) drawn in the
    alert colour at its foot; the first and last labels are written under the axis."""
    rtl = direction == "rtl"
    count = max(len(values), 1)
    largest = max((v for _, v, _ in values), default=0) or 1
    step = WIDTH / count
    width = max(step - 1, 1)
    height = COLUMN_HEIGHT + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" style="max-width:{WIDTH}px">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>',
        f'<line x1="0" y1="{COLUMN_HEIGHT}" x2="{WIDTH}" y2="{COLUMN_HEIGHT}" stroke="#d0d7de"/>',
    ]
    for index, (_, value, marked) in enumerate(values):
        left = WIDTH - (index + 1) * step if rtl else index * step
        tall = round(COLUMN_HEIGHT * value / largest)
        bad = round(COLUMN_HEIGHT * marked / largest)
        if tall:
            parts.append(
                f'<rect x="{left:.1f}" y="{COLUMN_HEIGHT - tall}" width="{width:.1f}" '
                f'height="{tall - bad}" fill="#0b5394"/>'
            )
        if bad:
            parts.append(
                f'<rect x="{left:.1f}" y="{COLUMN_HEIGHT - bad}" width="{width:.1f}" '
                f'height="{bad}" fill="#b42318"/>'
            )
    if values:
        first, last = values[0][0], values[-1][0]
        left_label, right_label = (last, first) if rtl else (first, last)
        for x, anchor, label in ((0, "start", left_label), (WIDTH, "end", right_label)):
            parts.append(
                f'<text x="{x}" y="{COLUMN_HEIGHT + 16}" text-anchor="{anchor}" direction="ltr" '
                f'font-size="12" fill="#57606a">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it is escaped above
