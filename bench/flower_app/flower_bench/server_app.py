"""ServerApp: FedAvg over every SuperNode for num-rounds, central evaluation each round; writes per-round figures."""

from __future__ import annotations

import json
import time

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flower_bench import model

app = ServerApp()


def _nbytes(record: ArrayRecord) -> int:
    return sum(len(a.data) for a in record.values())


class CountingFedAvg(FedAvg):
    """FedAvg that counts the model bytes it sends and receives (array payloads, without protocol overhead)."""

    sent = received = 0

    def configure_train(self, server_round, arrays, config, grid):
        msgs = list(super().configure_train(server_round, arrays, config, grid))
        self.sent += sum(_nbytes(m.content["arrays"]) for m in msgs)
        return msgs

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        self.received += sum(_nbytes(m.content["arrays"]) for m in replies if m.has_content())
        return super().aggregate_train(server_round, replies)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = model.settings(context.run_config)
    data = model.load(cfg["data-file"])
    clients = int(data["clients"])
    marks: list[dict] = []
    t0 = time.perf_counter()

    def central(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        acc, loss = model.evaluate(arrays.to_numpy_ndarrays(), data["x_test"], data["y_test"])
        marks.append({"round": server_round, "t": time.perf_counter() - t0, "accuracy": acc, "loss": loss})
        return MetricRecord({"accuracy": acc, "loss": loss})

    strategy = CountingFedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=clients,
                              min_available_nodes=clients)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(model.initial(data)), num_rounds=cfg["num-rounds"],
                   train_config=ConfigRecord({"lr": cfg["lr"]}), evaluate_fn=central)
    with open(cfg["out-file"], "w") as f:
        json.dump({"marks": marks, "bytes_sent": strategy.sent, "bytes_received": strategy.received,
                   "total_s": time.perf_counter() - t0}, f)
