"""Reading a hub configuration with the shared kernel (:mod:`waferscope.protocols.settings`).

Environment overrides: ``WAFERSCOPE_HUB__<SECTION>__<FIELD>`` (e.g.
``WAFERSCOPE_HUB__NOTIFY__WEBHOOKS__0__URL=...``); every problem is reported with its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from waferscope.hub.config import HubConfig
from waferscope.protocols.settings import ConfigError, ConfigLoader, KeyPath, Problem
from waferscope.protocols.settings import LoadedConfig as _Loaded

ENV_PREFIX = "WAFERSCOPE_HUB__"
ENV_CONFIG = "WAFERSCOPE_HUB_CONFIG"

LoadedConfig = _Loaded[HubConfig]
HUB_LOADER = ConfigLoader(HubConfig, ENV_PREFIX)

__all__ = ["ENV_PREFIX", "ConfigError", "KeyPath", "LoadedConfig", "Problem", "load_config"]


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, override from the environment, validate and resolve one hub configuration.

    ``path`` None means no file: defaults plus environment overrides.
    """
    return HUB_LOADER.load(path, environ)
