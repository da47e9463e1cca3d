"""The configuration reference, generated from the config model (``docs/edge-config.md``)."""

from __future__ import annotations

from waferscope.edge.alert_rules import REGISTRY
from waferscope.edge.config import EdgeConfig
from waferscope.protocols.settings.reference import TABLE_HEAD, field_rows, section_markdown


def reference_markdown() -> str:
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
    for tag, kind in REGISTRY.items():
        model = kind.settings_model
        out.append(f'\n### kind = "{tag}"\n')
        out.append(" ".join((model.__doc__ or "").split()) + "\n")
        rows = field_rows(model, skip=("kind", "id", "severity"))
        if rows:
            out.append(TABLE_HEAD)
            out.extend(rows)
    return "\n".join(out) + "\n"
