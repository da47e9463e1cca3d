"""waferscope hub (ingest, storage, review, alerts, model registry and rollout)."""
