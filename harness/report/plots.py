"""Inline SVG plots for the reports: no scripts, no fonts to fetch, readable printed, with a text alternative.

Each function returns markup that is safe to insert as is: every label goes through `markupsafe.escape`.
The `<title>` and `<desc>` of each plot are its text alternative, which screen readers announce.
"""

from __future__ import annotations

import hashlib
import math

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 16, 44
INK, GRID, ACCENT, LIMIT = "#111", "#d0d4da", "#1f5fa8", "#a4161a"


def _frame(title: str, description: str, body: list[str], width: int = WIDTH, height: int = HEIGHT) -> Markup:
    # Ids derive from the content, so the same data always gives the same page.
    number = hashlib.sha256(f"{title}\0{description}".encode()).hexdigest()[:10]
    title_id, desc_id = f"plot-{number}-title", f"plot-{number}-desc"
    parts = [
        f'<svg class="plot" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-labelledby="{title_id} {desc_id}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<desc id="{desc_id}">{escape(description)}</desc>',
        *body,
        "</svg>",
    ]
    return Markup("\n".join(parts))


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering low..high."""
    if high <= low:
        high = low + 1
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.floor(low / step) * step
    return [round(first + index * step, 10) for index in range(int((high - first) / step) + 2)
            if first + index * step <= high + step / 2]


def _text(x: float, y: float, label: str, anchor: str = "middle", size: int = 11, rotate: bool = False) -> str:
    transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{INK}"'
            f'{transform}>{escape(label)}</text>')


def _axes(x_ticks: list[tuple[float, str]], y_ticks: list[tuple[float, str]], x_label: str, y_label: str,
          width: int, height: int) -> list[str]:
    body = []
    bottom = height - MARGIN_BOTTOM
    for y, label in y_ticks:
        body.append(f'<line x1="{MARGIN_LEFT}" x2="{width - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="{GRID}" stroke-width="1"/>')
        body.append(_text(MARGIN_LEFT - 6, y + 4, label, anchor="end"))
    for x, label in x_ticks:
        body.append(_text(x, bottom + 16, label))
    body.append(f'<line x1="{MARGIN_LEFT}" x2="{width - MARGIN_RIGHT}" y1="{bottom}" y2="{bottom}" '
                f'stroke="{INK}" stroke-width="1"/>')
    body.append(f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT}" y1="{MARGIN_TOP}" y2="{bottom}" '
                f'stroke="{INK}" stroke-width="1"/>')
    body.append(_text((MARGIN_LEFT + width - MARGIN_RIGHT) / 2, height - 6, x_label))
    body.append(_text(14, (MARGIN_TOP + bottom) / 2, y_label, rotate=True))
    return body


def line_plot(points: list[tuple[float, float]], *, title: str, description: str, x_label: str, y_label: str,
              limit: float | None = None, limit_label: str = "") -> Markup:
    """Draw a line through `points` (x ascending), with an optional horizontal limit line."""
    width, height = WIDTH, HEIGHT
    xs = [x for x, _ in points] or [0.0]
    ys = [y for _, y in points if math.isfinite(y)] or [0.0]
    if limit is not None:
        ys.append(limit)
    y_ticks = _ticks(min(0.0, min(ys)), max(ys))
    x_ticks = _ticks(min(xs), max(xs), count=6)
    x_low, x_high = x_ticks[0], max(x_ticks[-1], x_ticks[0] + 1)
    y_low, y_high = y_ticks[0], max(y_ticks[-1], y_ticks[0] + 1)
    plot_width = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = height - MARGIN_TOP - MARGIN_BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        return (MARGIN_LEFT + (x - x_low) / (x_high - x_low) * plot_width,
                MARGIN_TOP + (1 - (y - y_low) / (y_high - y_low)) * plot_height)

    body = _axes([(at(x, y_low)[0], f"{x:g}") for x in x_ticks if x <= x_high],
                 [(at(x_low, y)[1], f"{y:g}") for y in y_ticks if y <= y_high], x_label, y_label, width, height)
    if limit is not None:
        _, y = at(x_low, limit)
        body.append(f'<line x1="{MARGIN_LEFT}" x2="{width - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="{LIMIT}" stroke-width="1.5" stroke-dasharray="6 4"/>')
        body.append(_text(width - MARGIN_RIGHT - 4, y - 5, limit_label, anchor="end", size=10))
    finite = [(x, y) for x, y in points if math.isfinite(y)]
    if finite:
        path = " ".join(f"{'M' if index == 0 else 'L'}{at(x, y)[0]:.1f},{at(x, y)[1]:.1f}"
                        for index, (x, y) in enumerate(finite))
        body.append(f'<path d="{path}" fill="none" stroke="{ACCENT}" stroke-width="2"/>')
        for x, y in finite if len(finite) <= 60 else (finite[0], finite[-1]):
            cx, cy = at(x, y)
            body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{ACCENT}"/>')
    return _frame(title, description, body, width, height)


def histogram(values: list[float], *, edges: list[float], title: str, x_label: str, y_label: str) -> Markup:
    """Counts of `values` in the bins between consecutive `edges` (the last bin includes its upper edge)."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        for index in range(len(counts)):
            last = index == len(counts) - 1
            if edges[index] <= value < edges[index + 1] or (last and value == edges[-1]):
                counts[index] += 1
                break
    width, height = WIDTH, HEIGHT
    top = max(counts + [1])
    y_ticks = [tick for tick in _ticks(0, top) if float(tick).is_integer()]
    y_high = max(y_ticks[-1], 1)
    plot_width = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = height - MARGIN_TOP - MARGIN_BOTTOM
    bar = plot_width / len(counts)
    bottom = height - MARGIN_BOTTOM

    def y_at(count: float) -> float:
        return MARGIN_TOP + (1 - count / y_high) * plot_height

    body = _axes([(MARGIN_LEFT + index * bar, f"{edge:g}") for index, edge in enumerate(edges)],
                 [(y_at(tick), f"{tick:g}") for tick in y_ticks], x_label, y_label, width, height)
    for index, count in enumerate(counts):
        if count:
            x = MARGIN_LEFT + index * bar + 2
            body.append(f'<rect x="{x:.1f}" y="{y_at(count):.1f}" width="{bar - 4:.1f}" '
                        f'height="{bottom - y_at(count):.1f}" fill="{ACCENT}"/>')
            body.append(_text(x + (bar - 4) / 2, y_at(count) - 4, str(count), size=10))
    bins = ", ".join(f"{edges[index]:g} to {edges[index + 1]:g}: {count}" for index, count in enumerate(counts) if count)
    return _frame(title, f"{len(values)} values. Counts per bin: {bins or 'none'}.", body, width, height)


def bars(items: list[tuple[str, float]], *, title: str, unit: str = "%", high: float = 100.0) -> Markup:
    """Horizontal bars, one per (label, value), values from 0 to `high`."""
    row = 26
    label_width = 190
    width = WIDTH
    height = MARGIN_TOP + row * len(items) + 24
    span = width - label_width - 60
    body = []
    for index, (label, value) in enumerate(items):
        y = MARGIN_TOP + index * row
        length = max(0.0, min(value, high)) / high * span
        body.append(_text(label_width - 8, y + 15, label, anchor="end"))
        body.append(f'<rect x="{label_width}" y="{y + 3}" width="{span}" height="{row - 8}" fill="{GRID}" '
                    f'opacity="0.5"/>')
        body.append(f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row - 8}" fill="{ACCENT}"/>')
        body.append(_text(label_width + span + 6, y + 15, f"{value:g}{unit}", anchor="start"))
    description = "; ".join(f"{label}: {value:g}{unit}" for label, value in items)
    return _frame(title, description + ".", body, width, height)
