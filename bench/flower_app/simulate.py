"""Flower 1.42's simulation mode for the same app: `run_simulation` (Ray backend), 4 virtual SuperNodes, in-process.

usage (bench/.venv-flower/bin/python): simulate.py DATA.npz OUT.json ROUNDS CLIENTS
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    data, out, rounds, clients = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    os.environ.update(FLOWER_BENCH_DATA=data, FLOWER_BENCH_OUT=out, FLOWER_BENCH_ROUNDS=rounds)
    from flwr.simulation import run_simulation

    from flower_bench.client_app import app as client_app
    from flower_bench.server_app import app as server_app

    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False}})
    return 0 if Path(out).exists() else 1


if __name__ == "__main__":
    sys.exit(main())
