"""The hub's control of federated retraining (docs/federated.md): SuperLink, node keys, runs."""
