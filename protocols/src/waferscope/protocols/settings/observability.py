"""Logging and tracing set-up of a process from its loaded configuration (edge, hub)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from waferscope.protocols import logs, tracing
from waferscope.protocols.settings.sections import TracingSection


def start_logging(
    role: str,
    level: str,
    fmt: str,
    *,
    static: Mapping[str, object] | None = None,
    text_prefix: str = "",
) -> None:
    """Logs to stderr as text or JSON lines (docs/observability.md)."""
    logs.configure_logging(role, level, fmt, static=static, text_prefix=text_prefix)


def start_tracing(section: TracingSection, *, role: str, instance: str) -> bool:
    """Install the tracer provider a ``[tracing]`` section asks for; True when on."""
    on = tracing.setup_tracing(tracing.TracingSettings.of(section), role=role, instance=instance)
    if on:
        logging.getLogger(f"waferscope.{role}").info(
            "tracing: OTLP to %s, sample ratio %g",
            tracing.traces_url(section.otlp_endpoint),
            section.sample_ratio,
        )
    return on
