"""`waferscope edge install-release FILE`: the offline path for a signed release.

For a box without a hub (air-gapped, or a hand-carried fix): the release is verified against
the configured roots and the highest version in the agent's store, unpacked into the inactive
slot and put through the health gate, exactly as a deployed one; with no live wafers here the
health gate is the last check, and the release becomes active at once (the previous engine
stays as last-known-good). A running agent starts the new engine at its next start.
"""

from __future__ import annotations

from pathlib import Path

from waferscope.edge.alerts import AlertEngine
from waferscope.edge.config_loader import load_config
from waferscope.edge.engine import ModelSlot, load_model
from waferscope.edge.releases import InstallOutcome, ReleaseManager
from waferscope.edge.store import Store


def install_release_file(config_path: Path, release: Path) -> InstallOutcome:
    """Install ``release`` for the agent configured in ``config_path``; typed error on refusal."""
    config = load_config(config_path).config
    assert config.store.path is not None
    store = Store(config.store.path)
    try:
        cache = config.data_dir / "engine-cache"
        offline = config.release.model_copy(update={"shadow_wafers": 0})
        alerts = AlertEngine(config.alerts.rules, config.device_id)
        manager = ReleaseManager(offline, config.model, store, alerts, cache_dir=cache)
        model = manager.load_startup_model(load_model)
        manager.bind(ModelSlot(model, config.model, cache))
        return manager.install(release)
    finally:
        store.close()
