#!/usr/bin/env python3
"""The same federated job on dainode (local testnet) and on Flower 1.42 (deployment and simulation), side by side.

    .venv/bin/python bench/fl_vs_flower.py                 # table; needs bench/.venv-flower (make bench makes it)
    .venv/bin/python bench/fl_vs_flower.py --rounds 5 --json --jobs iid

Job (dainode/ml/reference.py): scikit-learn digits / 16, stratified 80/20 split (seed 0), MLP 64-128-10, 4 clients,
1 local epoch of SGD (batch 32, lr 0.1), FedAvg, 20 rounds; IID shards (shard_iid) and label-skewed shards
(shard_label_skew). Both systems get the very same shard files and start from the same initial model (dainode's
init_params). Plus breast_cancer (standardised) logistic regression with dainode's `he` privacy mode against Flower
running the same model in the clear.

  dainode: bench/task.py's measure(): relay (dev chain) + model provider + 4 data+compute daemons; every update
           envelope-encrypted, CIDs on chain, bytes over bitswap. Bytes = bitswap bytes sent by all nodes.
  Flower deployment: flower-superlink (--insecure, --disable-runtime-dependency-installation) + 4 flower-supernode on
           loopback, the app in bench/flower_app/ submitted with `flwr run`. Bytes = model arrays the ServerApp sent
           and received (payload, no protocol overhead).
  Flower simulation: flwr.simulation.run_simulation (Ray backend), same ServerApp/ClientApp.
Round time = time between the central evaluations after consecutive rounds (it includes evaluation on both sides);
total = submit (task create / flwr run) to the final result. The systems alternate within each job so that load from
other processes hits all of them. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import figures  # noqa: E402
import task as dainode_task  # noqa: E402

from dainode.localnet import free_port  # noqa: E402

FLOWER_VENV = ROOT / "bench" / ".venv-flower"
FLOWER_APP = ROOT / "bench" / "flower_app"
CLIENTS = 4
JOBS = ("iid", "label_skew", "he")
# The breast_cancer job on both systems: full-batch steps in dainode's he mode, lr 0.05 from zeros. Its cubic sigmoid
# is a sigmoid only for |x·w| <~ 5; at lr 0.1 (or from a random start) the weights grow until it is not, and the
# training diverges (every update then fails the model provider's checks).
HE_LR = 0.05
LR = 0.1  # the digits job (dainode's e2e manifest and Flower's default)


# --- the job's data, written once for both systems -------------------------------------------------------------------

def digits_files(split: str, work: Path, clients: int = CLIENTS) -> tuple[Path, list[Path]]:
    """Flower's .npz (init, shards, test) and dainode's shard files for the digits job with ``split`` shards."""
    from dainode.ml.preprocess import shard_iid, shard_label_skew
    from dainode.ml.reference import reference_data

    train, test = reference_data()
    shards = shard_iid(len(train), clients, seed=0) if split == "iid" else shard_label_skew(train.y, clients, seed=0)
    parts = [(train.x[s].reshape(len(s), -1), train.y[s]) for s in shards]
    return _write(work / f"digits-{split}", parts, (test.x.reshape(len(test.y), -1), test.y), [64, 128, 10])


def breast_cancer_files(work: Path, clients: int = CLIENTS) -> tuple[Path, list[Path]]:
    """breast_cancer standardised with the train part's mean/std and clipped to ±5 (the he mode refuses features
    beyond ±8: its cubic sigmoid and CKKS headroom hold only for small values; both systems get the same files),
    stratified 80/20 (seed 0), IID shards."""
    from dainode.ml.datasets import load_builtin, stratified_split
    from dainode.ml.preprocess import shard_iid

    ds = load_builtin("breast_cancer")
    train, test = stratified_split(ds, 0.2, 0)
    mu, sd = train.x.mean(axis=0), train.x.std(axis=0) + 1e-8
    tx, vx = (np.clip((a - mu) / sd, -5, 5).astype(np.float32) for a in (train.x, test.x))
    parts = [(tx[s], train.y[s]) for s in shard_iid(len(train.y), clients, seed=0)]
    return _write(work / "breast_cancer", parts, (vx, test.y), [30, 2], zero_init=True)


def _write(base: Path, parts, test, sizes, zero_init: bool = False) -> tuple[Path, list[Path]]:
    from dainode.ml.spec import ModelSpec, init_params

    base.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(kind="mlp" if len(sizes) > 2 else "logreg", sizes=tuple(sizes), seed=0)
    flat, layers, off = init_params(spec), {}, 0
    flat = np.zeros_like(flat) if zero_init else flat
    for i, (_, shape) in enumerate(spec.layout()):
        size = int(np.prod(shape))
        layers[f"init_{i}"] = flat[off:off + size].reshape(shape)
        off += size
    files = []
    arrays = {"n_layers": np.int64(len(sizes) - 1), "clients": np.int64(len(parts)), "x_test": test[0].astype(np.float32),
              "y_test": test[1].astype(np.int64), **layers}
    for i, (x, y) in enumerate(parts):
        arrays[f"x_{i}"], arrays[f"y_{i}"] = x.astype(np.float32), y.astype(np.int64)
        p = base / f"shard{i}.npz"
        np.savez(p, x=x.astype(np.float32), y=y.astype(np.int64))
        files.append(p)
    np.savez(base / "test.npz", x=test[0].astype(np.float32), y=test[1].astype(np.int64))
    flower = base / "flower.npz"
    np.savez(flower, **arrays)
    return flower, files


def dainode_manifest(job: str, rounds: int, providers: int, test_file: Path | None = None) -> str:
    """The task manifest of the job (the e2e manifest with plain SGD, the job's rounds/providers, prices that fit)."""
    from tests.integration.test_task_e2e import MANIFEST

    m = (MANIFEST.replace("rounds = 10", f"rounds = {rounds}").replace("providers = 4", f"providers = {providers}")
         .replace("quorum = 4", f"quorum = {providers}").replace('optimizer = "momentum"\nmomentum = 0.9\n', 'optimizer = "sgd"\n')
         .replace("min_rows = 100", "min_rows = 20"))
    # the pool (4 ETH) must cover providers x (max data + max compute price): up to 26 providers at these prices
    eth = 10**18
    m = (m.replace(f'max_data_price_wei = "{eth // 2}"', f'max_data_price_wei = "{eth // 10}"')
         .replace(f'max_compute_price_wei = "{eth // 5}"', f'max_compute_price_wei = "{eth // 20}"'))
    if job == "he":
        m = (m.replace('privacy = "fl"', 'privacy = "he"').replace('kind = "mlp"', 'kind = "logistic"')
             .replace("layers = [64, 128, 10]", "layers = [30, 2]").replace("features = 64", "features = 30")
             .replace("label_classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "label_classes = [0, 1]")
             .replace("lr = 0.1\n", f'lr = {HE_LR}\ninit = "zeros"\n'))
        assert f"lr = {HE_LR}" in m, "the e2e manifest's lr line changed: update dainode_manifest"
        head, _, _ = m.partition("[test]")
        m = head + f'[test]\ndataset = "{test_file}"\n'
    return m


# --- the three systems ------------------------------------------------------------------------------------------------

def flower_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLWR_", "DAINODE_"))}
    env.update(FLWR_TELEMETRY_ENABLED="0", FLWR_HOME=str(home), PATH=f"{FLOWER_VENV / 'bin'}:{env.get('PATH', '')}",
               PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return env


def _wait_file(path: Path, procs: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a Flower process exited with {dead[0].returncode}: {' '.join(map(str, dead[0].args[:2]))}")
        time.sleep(0.05)
    raise TimeoutError(f"{path} not written within {timeout:g} s")


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM the SuperLink, the SuperNodes and their flower-superexec children (by PID; a SuperNode's superexec
    can outlive it), SIGKILL what is left after 10 s."""
    import psutil

    kids = []
    for p in procs:
        try:
            kids += psutil.Process(p.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for k in kids:
        try:
            k.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(kids, timeout=10)
    for k in alive:
        try:
            k.kill()
        except psutil.NoSuchProcess:
            pass
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def flower_deployment(data: Path, rounds: int, work: Path, clients: int = CLIENTS, lr: float = LR) -> dict:
    """SuperLink + ``clients`` SuperNodes on loopback, `flwr run` of bench/flower_app; stopped by PID afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    home = work / "flwr-home"
    home.mkdir(exist_ok=True)
    port = free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\naddress = "127.0.0.1:{port}"\n'
                                      'insecure = true\n')
    env, out = flower_env(home), work / "flower-out.json"
    out.unlink(missing_ok=True)
    bin_ = FLOWER_VENV / "bin"
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        def spawn(name, argv):
            log = open(work / f"{name}.log", "wb")
            logs.append(log)
            procs.append(subprocess.Popen(argv, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT))

        spawn("superlink", [str(bin_ / "flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
                            "--host", "127.0.0.1", "--port", str(port), "--health-server-address", f"127.0.0.1:{free_port()}"])
        _wait_port(port, procs, 60)
        for i in range(clients):
            spawn(f"supernode{i}", [str(bin_ / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}",
                                    "--host", "127.0.0.1", "--port", str(free_port()),
                                    "--node-config", f"partition-id={i} num-partitions={clients}"])
        time.sleep(1.0)
        t0 = time.monotonic()
        cfg = f'data-file="{data}" out-file="{out}" num-rounds={rounds} lr={lr}'
        sub = subprocess.run([str(bin_ / "flwr"), "run", str(FLOWER_APP), "bench", "--run-config", cfg], env=env, cwd=work,
                             capture_output=True, text=True, timeout=300)
        if sub.returncode != 0:
            return {"error": f"flwr run exited {sub.returncode}: {(sub.stderr or sub.stdout).strip()[-300:]}"}
        _wait_file(out, procs, 60 + rounds * 30)
        wall = time.monotonic() - t0
        return figures.summarize_flower(json.loads(out.read_text()), wall)
    finally:
        _stop(procs)
        for log in logs:
            log.close()


def _wait_port(port: int, procs, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if procs[0].poll() is not None:
            raise RuntimeError(f"flower-superlink exited with {procs[0].returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"flower-superlink not listening on {port} within {timeout:g} s")


def flower_simulation(data: Path, rounds: int, work: Path, clients: int = CLIENTS, lr: float = LR) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    out = work / "flower-sim-out.json"
    out.unlink(missing_ok=True)
    env = flower_env(work / "flwr-home")
    env.update(RAY_USAGE_STATS_ENABLED="0", FLOWER_BENCH_LR=str(lr))
    t0 = time.monotonic()
    with open(work / "simulation.log", "wb") as log:
        p = subprocess.run([str(FLOWER_VENV / "bin" / "python"), str(FLOWER_APP / "simulate.py"), str(data), str(out), str(rounds),
                            str(clients)], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, timeout=600)
    wall = time.monotonic() - t0
    if p.returncode != 0 or not out.exists():
        return {"error": f"simulation exited {p.returncode}; see {work / 'simulation.log'}"}
    res = json.loads(out.read_text())
    # wall includes Ray's start-up; the ServerApp's own total is from its first evaluation to its last
    return {**figures.summarize_flower(res, res["total_s"]), "process_s": wall}


def measure_dainode(rounds: int, manifest: str, files: list[Path], attempts: int = 3) -> dict:
    """bench/task.py's measure() on a fresh network, again (up to ``attempts``) when a run fails: the dev chain
    (anvil --prune-history) intermittently answers an eth_call at a just-mined block with BlockOutOfRangeError under
    load, which fails a match or crashes a node. The failed attempts are kept in the result (``failed_attempts``)."""
    failed: list[str] = []
    res: dict = {}
    for _ in range(attempts):
        try:
            res = dainode_task.measure(rounds, providers=len(files), manifest_text=manifest, files=files, verify=False)
        except Exception as exc:  # a crashed node shows up as a failed RPC here
            res = {"error": f"{type(exc).__name__}: {exc}"}
        if "error" not in res and res.get("phase") == "split_posted":
            if res.get("crashed_after_task"):
                failed.append(f"(kept) nodes crashed after the last round: {', '.join(res['crashed_after_task'])}")
            break
        err = res.get("error") or f"task ended in phase {res.get('phase')}"
        if "privacy" in err:  # refused by the node: another attempt gets the same answer
            break
        failed.append(err)
    return {**res, "failed_attempts": failed}


def dainode_run(job: str, rounds: int, files: list[Path], test_file: Path | None) -> dict:
    res = measure_dainode(rounds, dainode_manifest(job, rounds, len(files), test_file), files)
    return {**figures.summarize_dainode(res), "failed_attempts": res["failed_attempts"], "raw": res}


# --- the comparison ---------------------------------------------------------------------------------------------------

def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def run_job(job: str, rounds: int, work: Path, first: str, log) -> dict:
    if job == "he":
        data, files = breast_cancer_files(work)
        test_file = files[0].parent / "test.npz"
    else:
        data, files = digits_files(job, work)
        test_file = None
    order = ["flower_deployment", "dainode", "flower_simulation"]
    if first == "dainode":
        order = ["dainode", "flower_deployment", "flower_simulation"]
    out: dict = {"load_before": load()}
    lr = HE_LR if job == "he" else LR
    for system in order:
        t0 = time.monotonic()
        log(f"[{job}] {system} ({rounds} rounds, load {load()})")
        try:
            if system == "dainode":
                out[system] = dainode_run(job, rounds, files, test_file)
            elif system == "flower_deployment":
                out[system] = flower_deployment(data, rounds, work / f"{job}-deployment", lr=lr)
            else:
                out[system] = flower_simulation(data, rounds, work / f"{job}-simulation", lr=lr)
        except Exception as exc:  # a failed system is reported as such, the others still run
            out[system] = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"[{job}] {system}: {json.dumps({k: v for k, v in out[system].items() if k != 'raw'})} in "
            f"{time.monotonic() - t0:.0f} s")
    out["load_after"] = load()
    return out


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--he-rounds", type=int, default=10, help="rounds of the breast_cancer logistic regression job")
    ap.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated subset of {', '.join(JOBS)}")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = ap.parse_args(argv)
    if not (FLOWER_VENV / "bin" / "flwr").exists():
        print(f"{FLOWER_VENV} has no flwr: run `make bench` (it creates the Flower venv)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dainode-bench-flower-"))
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    results = {}
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        for i, job in enumerate(args.jobs.split(",")):
            rounds = args.he_rounds if job == "he" else args.rounds
            results[job] = run_job(job, rounds, work, "dainode" if i % 2 else "flower", log)
    except KeyboardInterrupt:  # SIGTERM (make bench's time budget): every process was stopped; report what is done
        log("stopped before the end; reporting the jobs done")
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, default=str))
        return 0
    for job, res in results.items():
        print(f"\n## {job} (load {res['load_before']} -> {res['load_after']})")
        print(figures.table(figures.COMPARISON_HEADER, figures.comparison_rows(res)))
        parts = res.get("dainode", {}).get("parts_ms")
        if parts:
            print("dainode breakdown (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
