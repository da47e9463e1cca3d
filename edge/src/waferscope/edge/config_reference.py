"""The configuration reference, generated from the config model (``docs/edge-config.md``)."""

from __future__ import annotations

from typing import get_args

from waferscope.edge.config import EdgeConfig
from waferscope.protocols.settings.reference import TABLE_HEAD, field_rows, section_markdown

RULE_KINDS = (
    "PatternRule",
    "PatternRepeatRule",
    "FailDensityRule",
    "LowConfidenceStreakRule",
    "ParseFailureRule",
)


def reference_markdown() -> str:
    from waferscope.edge import config as cfg

    out = [
        "# Edge agent configuration reference",
        "",
        "Generated from `waferscope.edge.config` by `waferscope edge config-reference`; do not "
        "edit by hand. Unknown keys are errors. Every key can be overridden from the environment "
        "with `WAFERSCOPE_EDGE__<SECTION>__<KEY>` (levels joined by double underscores, list "
        "items by index), applied at load.",
    ]
    section_markdown(EdgeConfig, "", out)
    out.append("\n## Alert rules (`[[alerts.rules]]`)\n")
    out.append(
        "Every rule has `id` (required, unique) and `severity` "
        "(`info`, `warning`, `error`, `critical`; default `warning`), plus:"
    )
    for kind in RULE_KINDS:
        model = getattr(cfg, kind)
        tag = get_args(model.model_fields["kind"].annotation)[0]
        out.append(f'\n### kind = "{tag}"\n')
        out.append(" ".join((model.__doc__ or "").split()) + "\n")
        rows = field_rows(model, skip=("kind", "id", "severity"))
        if rows:
            out.append(TABLE_HEAD)
            out.extend(rows)
    return "\n".join(out) + "\n"
