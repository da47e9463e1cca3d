"""Drift monitoring at the hub: statistics, the periodic job, its snapshots and metrics."""
