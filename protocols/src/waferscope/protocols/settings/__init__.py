"""The configuration kernel every part builds its typed settings on (one source of truth).

:mod:`.sections` holds the base :class:`Section` and the sections the edge and the hub share
(client TLS, tracing); :mod:`.loader` reads a TOML or YAML file, applies environment overrides
and reports every problem with its line; :mod:`.reference` writes the Markdown reference of a
model; :mod:`.observability` sets up logging and tracing from a loaded configuration.
"""

from __future__ import annotations

from waferscope.protocols.settings.loader import (
    ConfigError,
    ConfigLoader,
    KeyPath,
    LoadedConfig,
    Problem,
)
from waferscope.protocols.settings.sections import ClientTlsSection, Section, TracingSection

__all__ = [
    "ClientTlsSection",
    "ConfigError",
    "ConfigLoader",
    "KeyPath",
    "LoadedConfig",
    "Problem",
    "Section",
    "TracingSection",
]
