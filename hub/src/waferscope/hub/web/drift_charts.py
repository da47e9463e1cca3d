"""Server-rendered SVG charts of the drift page: class shares reference vs current, and the
corrected p-values and PSI of one (device, model) over the drift runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from waferscope.hub.db.schema import DriftSnapshot


def _open(width: int, height: int, css: str, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="34" y="12" class="t">{escape(title)}</text>',
    ]


def histogram_svg(
    classes: Sequence[str],
    reference: Sequence[int],
    current: Sequence[int],
    *,
    title: str,
    width: int = 520,
    height: int = 190,
) -> str:
    """Grouped bars per class: the share of the reference window (grey) and of the current
    window (blue)."""
    pad_l, pad_r, pad_t, pad_b = 34, 8, 22, 44
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    rt, ct = max(sum(reference), 1), max(sum(current), 1)
    ref = [r / rt for r in reference]
    cur = [c / ct for c in current]
    top = max(max(ref, default=0.0), max(cur, default=0.0), 0.05)
    step = w / max(len(classes), 1)
    bw = max(step / 2 - 2, 1)
    parts = _open(width, height, "drift-hist", title)
    for i, name in enumerate(classes):
        x = pad_l + i * step + 1
        for j, (share, count, css, which) in enumerate(
            ((ref[i], reference[i], "ref", "reference"), (cur[i], current[i], "cur", "current"))
        ):
            bh = h * share / top
            parts.append(
                f'<rect x="{x + j * (bw + 1):.1f}" y="{pad_t + h - bh:.1f}" width="{bw:.1f}" '
                f'height="{bh:.1f}" class="{css}" data-class="{escape(name)}">'
                f"<title>{escape(name)} {which}: {count} ({share:.1%})</title></rect>"
            )
        parts.append(
            f'<text x="{pad_l + (i + 0.5) * step:.1f}" y="{pad_t + h + 12}" class="a" '
            f'text-anchor="end" transform="rotate(-30 {pad_l + (i + 0.5) * step:.1f} '
            f'{pad_t + h + 12})">{escape(name)}</text>'
        )
    parts.append(
        f'<text x="{pad_l - 4}" y="{pad_t + 8}" class="a" text-anchor="end">{top:.0%}</text>'
        f'<text x="{pad_l - 4}" y="{pad_t + h}" class="a" text-anchor="end">0</text>'
        f'<rect x="{width - 150}" y="4" width="9" height="9" class="ref"/>'
        f'<text x="{width - 138}" y="12" class="a">reference</text>'
        f'<rect x="{width - 80}" y="4" width="9" height="9" class="cur"/>'
        f'<text x="{width - 68}" y="12" class="a">current</text>'
        "</svg>"
    )
    return "".join(parts)


def history_svg(
    rows: Sequence[DriftSnapshot], *, alpha: float, width: int = 520, height: int = 170
) -> str:
    """Corrected p-values (log scale, left axis; alpha dashed) and PSI (right axis) per run."""
    pad_l, pad_r, pad_t, pad_b = 34, 34, 22, 18
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    parts = _open(width, height, "drift-history", "p-value (log) and PSI over the runs")
    n = len(rows)
    floor = 1e-6

    def x(i: int) -> float:
        return pad_l + (w * i / (n - 1) if n > 1 else w / 2)

    def y_p(p: float) -> float:
        return pad_t + h * min(-math.log10(max(p, floor)) / 6, 1.0)

    top_psi = max([r.psi for r in rows if r.psi is not None] + [0.3])

    def y_psi(v: float) -> float:
        return pad_t + h - h * v / top_psi

    parts.append(
        f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{y_p(alpha):.1f}" y2="{y_p(alpha):.1f}" '
        f'class="alpha"><title>alpha {alpha}</title></line>'
    )
    series = (
        ("class_p_adjusted", "pc", y_p, "class p"),
        ("mmd_p_adjusted", "pe", y_p, "embedding p"),
        ("psi", "psi", y_psi, "PSI"),
    )
    for attr, css, scale, label in series:
        points = [(i, float(v)) for i, r in enumerate(rows) if (v := getattr(r, attr)) is not None]
        if len(points) > 1:
            path = " ".join(f"{x(i):.1f},{scale(v):.1f}" for i, v in points)
            parts.append(f'<polyline points="{path}" class="{css}" fill="none"/>')
        for i, v in points:
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{scale(v):.1f}" r="2" class="{css}">'
                f"<title>{escape(str(rows[i].computed_at)[:16])} {label} {v:.3g}</title></circle>"
            )
    parts.append(
        f'<text x="{pad_l - 4}" y="{pad_t + 8}" class="a" text-anchor="end">1</text>'
        f'<text x="{pad_l - 4}" y="{pad_t + h}" class="a" text-anchor="end">1e-6</text>'
        f'<text x="{pad_l + w + 4}" y="{pad_t + 8}" class="a">{top_psi:.2f}</text>'
        f'<text x="{pad_l + w + 4}" y="{pad_t + h}" class="a">0</text>'
        f'<text x="{pad_l}" y="{height - 4}" class="a"><tspan class="pc">● class p</tspan> '
        f'<tspan class="pe">● embedding p</tspan> <tspan class="psi">● PSI</tspan> '
        "— dashed: alpha</text>"
    )
    if not rows:
        parts.append(f'<text x="{pad_l + 8}" y="{pad_t + h / 2}" class="a">no runs yet</text>')
    parts.append("</svg>")
    return "".join(parts)
