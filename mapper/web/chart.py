"""The progress chart: entities processed over time, drawn as an SVG string by the server."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 560, 180
#: Room for the axis labels: left, right, top, bottom.
PAD = (56, 12, 12, 24)


def progress_svg(
    samples: Sequence[Sequence[float]], width: int = WIDTH, height: int = HEIGHT
) -> Markup:
    """A line of processed entities (y) over seconds since the first sample (x).

    Fewer than two samples draw an empty frame saying so. The result is inline SVG
    (no script, no external resource), safe to put in a page as it is.
    """
    left, right, top, bottom = PAD
    inner_w, inner_h = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="entities processed over time">',
        f'<rect x="{left}" y="{top}" width="{inner_w}" height="{inner_h}" fill="#fafafa" '
        'stroke="#ccc"/>',
    ]
    if len(samples) < 2:
        parts.append(
            f'<text x="{left + inner_w / 2}" y="{top + inner_h / 2}" text-anchor="middle" '
            'fill="#888" font-size="12">no progress samples yet</text></svg>'
        )
        return Markup("".join(parts))
    t0, t1 = samples[0][0], samples[-1][0]
    top_value = max(max(v for _, v in samples), 1)
    span = max(t1 - t0, 1e-9)

    def x(t: float) -> float:
        return round(left + (t - t0) / span * inner_w, 1)

    def y(v: float) -> float:
        return round(top + inner_h - v / top_value * inner_h, 1)

    points = " ".join(f"{x(t)},{y(v)}" for t, v in samples)
    parts += [
        f'<polyline class="progress-line" points="{points}" fill="none" stroke="#1565c0" '
        f'stroke-width="2" data-points="{len(samples)}"/>',
        _label(left - 4, top + 10, f"{int(top_value):,}", "end"),
        _label(left - 4, top + inner_h, "0", "end"),
        _label(left, height - 6, "0 s", "start"),
        _label(left + inner_w, height - 6, f"{_seconds(span)}", "end"),
        "</svg>",
    ]
    return Markup("".join(parts))


def _label(x: float, y: float, text: str, anchor: str) -> str:
    return (
        f'<text x="{x}" y="{y}" text-anchor="{anchor}" font-size="11" fill="#555">'
        f"{escape(text)}</text>"
    )


def _seconds(span: float) -> str:
    if span >= 120:
        return f"{span / 60:.1f} min"
    return f"{span:.0f} s"
