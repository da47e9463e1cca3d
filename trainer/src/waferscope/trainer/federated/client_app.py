"""The Flower ClientApp: a SuperNode's train and evaluate replies on its own labelled maps.

The node's data come from its node config (``data-path``, set when the SuperNode starts); the
model and training settings come from the server in each message (``train-config``, the trainer
config as JSON), so nodes need no copy of the run's config.
"""

from __future__ import annotations

import json

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.typing import MetricRecordValues
from flwr.clientapp import ClientApp

from waferscope.trainer.config import TrainConfig
from waferscope.trainer.federated.node_training import (
    NodeDataError,
    NodeDataset,
    NodeTrainer,
    StateDict,
    metric_scalars,
)

app = ClientApp()


def _config(msg: Message) -> ConfigRecord:
    return msg.content.config_records["config"]


def _weights(msg: Message) -> StateDict:
    return msg.content.array_records["arrays"].to_torch_state_dict()


def _number(config: ConfigRecord, key: str, default: float) -> float:
    value = config.get(key, default)
    if not isinstance(value, int | float):
        raise NodeDataError(f"message config {key!r} is not a number: {value!r}")
    return float(value)


def _trainer(msg: Message, context: Context) -> NodeTrainer:
    config = _config(msg)
    cfg = TrainConfig.from_dict(json.loads(str(config["train-config"])), origin="train-config")
    threads = context.node_config.get("threads")
    if isinstance(threads, int) and threads > 0:
        torch.set_num_threads(threads)
    return NodeTrainer(cfg, NodeDataset.from_node_config(context.node_config.get("data-path")))


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train from the global weights for ``local-steps`` steps; reply weights and metrics."""
    config = _config(msg)
    node = _trainer(msg, context)
    result = node.fit(
        _weights(msg),
        int(_number(config, "local-steps", 1)),
        proximal_mu=_number(config, "proximal-mu", 0.0),
        seed=int(_number(config, "round", 1)) * 1009,  # fixed per round: repeatable runs
    )
    metrics: dict[str, MetricRecordValues] = {
        "num-examples": result.num_examples,
        "train-loss": result.loss,
    }
    metrics |= metric_scalars(result.val, "local-val-")
    content = RecordDict(
        {
            "arrays": ArrayRecord(result.weights),
            "metrics": MetricRecord(metrics),
            "node": ConfigRecord({"node-id": context.node_id, "data-digest": result.data_digest}),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global weights on this node's own validation split."""
    node = _trainer(msg, context)
    node.load(_weights(msg))
    val = node.evaluate()
    metrics: dict[str, MetricRecordValues] = {"num-examples": val.n}
    metrics |= metric_scalars(val, "local-val-")
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
