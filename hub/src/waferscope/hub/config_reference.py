"""The configuration reference, generated from the config model (``docs/hub-config.md``)."""

from __future__ import annotations

from waferscope.hub.config import HubConfig, WebhookConfig
from waferscope.protocols.settings.reference import TABLE_HEAD, field_rows, section_markdown


def reference_markdown() -> str:
    out = [
        "# Hub configuration reference",
        "",
        "Generated from `waferscope.hub.config` by `waferscope hub config-reference`; do not edit "
        "by hand. The file is TOML (`hub.toml`) or YAML (`hub.yaml`); unknown keys are errors and "
        "`waferscope hub validate-config` names the line of every bad value. Every key can be "
        "overridden from the environment with `WAFERSCOPE_HUB__<SECTION>__<KEY>` (levels joined "
        "by double underscores, list items by index, values read as YAML scalars), applied at "
        "load. Relative paths are taken from the configuration file's folder.",
        "",
        "A configuration of three lines is enough:",
        "",
        "```toml",
        'data_dir = "/var/lib/waferscope-hub"',
        "[mqtt]",
        'host = "broker.fab3.example"',
        "```",
    ]
    section_markdown(HubConfig, "", out)
    out.append("\n### `[[notify.webhooks]]` (each entry)\n")
    out.append(TABLE_HEAD)
    out.extend(field_rows(WebhookConfig))
    return "\n".join(out) + "\n"
