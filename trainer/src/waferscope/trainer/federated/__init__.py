"""Federated retraining with Flower: edges train the pattern classifier on their own labelled maps.

``client_app`` and ``server_app`` are the Flower ClientApp and ServerApp (Message API);
``node_training`` is the local train/evaluate step of one node; ``server_state`` keeps the
resumable round state and writes the candidate checkpoint; ``flower_app/pyproject.toml`` is the
Flower App definition that ``flwr run`` submits (see docs/federated.md).
"""
