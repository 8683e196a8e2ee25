"""ClientApp: one local epoch of SGD on this SuperNode's shard (partition-id from its node config)."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flower_bench import model

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = model.settings(context.run_config)
    data = model.load(cfg["data-file"])
    pid = int(context.node_config["partition-id"])
    x, y = data[f"x_{pid}"], data[f"y_{pid}"]
    params = msg.content["arrays"].to_numpy_ndarrays()
    rnd = int(msg.content["config"].get("server-round", 0)) if "config" in msg.content else 0
    new = model.train_epoch(params, x, y, cfg["lr"], cfg["batch"], seed=1000 * rnd + pid)
    content = RecordDict({"arrays": ArrayRecord(new), "metrics": MetricRecord({"num-examples": len(y)})})
    return Message(content=content, reply_to=msg)
