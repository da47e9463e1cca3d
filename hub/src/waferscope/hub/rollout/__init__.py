"""Rollouts of signed releases to edge devices: waves, gates, rollback (docs/hub.md#rollouts)."""
