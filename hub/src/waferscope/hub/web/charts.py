"""Small server-rendered SVG charts (no JavaScript, no chart library)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape


def trend_svg(
    days: Sequence[str],
    counts: Sequence[int],
    totals: Sequence[int],
    *,
    title: str,
    width: int = 320,
    height: int = 120,
) -> str:
    """Daily share of one pattern (line, dots on days it occurs) over daily wafer counts (bars)."""
    pad_l, pad_r, pad_t, pad_b = 34, 8, 18, 18
    w = width - pad_l - pad_r
    h = height - pad_t - pad_b
    n = max(len(days), 1)
    top_total = max(max(totals, default=0), 1)
    shares = [c / t if t else 0.0 for c, t in zip(counts, totals, strict=True)]
    top_share = max(max(shares, default=0.0), 0.05)
    step = w / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="{pad_l}" y="12" class="t">{escape(title)}</text>',
    ]
    for i, total in enumerate(totals):
        bh = h * total / top_total
        parts.append(
            f'<rect x="{pad_l + i * step + 1:.1f}" y="{pad_t + h - bh:.1f}" '
            f'width="{max(step - 2, 1):.1f}" height="{bh:.1f}" class="bar">'
            f"<title>{escape(days[i])}: {total} wafers</title></rect>"
        )
    # one line per run of days with wafers: a day without wafers has no share, not a 0 % share
    runs: list[list[str]] = [[]]
    for i, (s, total) in enumerate(zip(shares, totals, strict=True)):
        if total:
            runs[-1].append(f"{pad_l + (i + 0.5) * step:.1f},{pad_t + h - h * s / top_share:.1f}")
        elif runs[-1]:
            runs.append([])
    for run in runs:
        if len(run) > 1:
            parts.append(f'<polyline points="{" ".join(run)}" class="line" fill="none"/>')
    for i, (s, c) in enumerate(zip(shares, counts, strict=True)):
        if c:
            parts.append(
                f'<circle cx="{pad_l + (i + 0.5) * step:.1f}" '
                f'cy="{pad_t + h - h * s / top_share:.1f}" r="2" class="dot">'
                f"<title>{escape(days[i])}: {c} ({s:.1%})</title></circle>"
            )
    parts.append(
        f'<text x="{pad_l - 4}" y="{pad_t + 8}" class="a" text-anchor="end">'
        f"{top_share:.0%}</text>"
        f'<text x="{pad_l - 4}" y="{pad_t + h}" class="a" text-anchor="end">0</text>'
    )
    if days:
        parts.append(
            f'<text x="{pad_l}" y="{height - 4}" class="a">{escape(days[0][5:])}</text>'
            f'<text x="{width - pad_r}" y="{height - 4}" class="a" text-anchor="end">'
            f"{escape(days[-1][5:])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
