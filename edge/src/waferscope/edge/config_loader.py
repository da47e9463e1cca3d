"""Reading an edge configuration with the shared kernel (:mod:`waferscope.protocols.settings`).

Environment overrides: ``WAFERSCOPE_EDGE__<SECTION>__<FIELD>`` (e.g.
``WAFERSCOPE_EDGE__ALERTS__RULES__0__N=4``); every problem is reported with its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from waferscope.edge.config import RULE_KINDS, EdgeConfig
from waferscope.protocols.settings import ConfigError, ConfigLoader, KeyPath, Problem
from waferscope.protocols.settings import LoadedConfig as _Loaded

ENV_PREFIX = "WAFERSCOPE_EDGE__"
ENV_CONFIG = "WAFERSCOPE_EDGE_CONFIG"

LoadedConfig = _Loaded[EdgeConfig]
EDGE_LOADER = ConfigLoader(EdgeConfig, ENV_PREFIX, hidden_loc=RULE_KINDS)

__all__ = ["ENV_PREFIX", "ConfigError", "KeyPath", "LoadedConfig", "Problem", "load_config"]


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, override from the environment, validate and resolve one edge configuration file."""
    return EDGE_LOADER.load(path, environ)
