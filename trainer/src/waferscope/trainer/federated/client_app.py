"""The Flower ClientApp: a SuperNode's train and evaluate replies on its own labelled maps.

The node's data come from its node config (``data-path``, set when the SuperNode starts); the
model and training settings come from the server in each message (``train-config``, the trainer
config as JSON), so nodes need no copy of the run's config.
"""

from __future__ import annotations

import json

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from waferscope.trainer.config import TrainConfig
from waferscope.trainer.federated.node_training import NodeDataset, NodeTrainer, metric_scalars

app = ClientApp()


def _trainer(msg: Message, context: Context) -> NodeTrainer:
    config = msg.content["config"]
    cfg = TrainConfig.from_dict(json.loads(str(config["train-config"])), origin="train-config")
    threads = context.node_config.get("threads")
    if isinstance(threads, int) and threads > 0:
        torch.set_num_threads(threads)
    return NodeTrainer(cfg, NodeDataset.from_node_config(context.node_config.get("data-path")))


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train from the global weights for ``local-steps`` steps; reply weights and metrics."""
    config = msg.content["config"]
    node = _trainer(msg, context)
    weights = msg.content["arrays"].to_torch_state_dict()
    result = node.fit(
        weights,
        int(config["local-steps"]),
        proximal_mu=float(config.get("proximal-mu", 0.0)),
        seed=int(config.get("server-round", 1)) * 1009 + context.node_id % 1009,
    )
    metrics = {"num-examples": result.num_examples, "train-loss": result.loss}
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
    node.load(msg.content["arrays"].to_torch_state_dict())
    val = node.evaluate()
    metrics = {"num-examples": val.n} | metric_scalars(val, "local-val-")
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
