"""Daemons as subprocesses for integration tests: the product's own launcher (`dainode.localnet`)."""

from dainode.localnet import PASSWORD, DaemonProcess, dainode_cmd, daemon_env, free_port, init_nodes, raw_request, run_cli

__all__ = ["PASSWORD", "DaemonProcess", "dainode_cmd", "daemon_env", "free_port", "init_nodes", "raw_request", "run_cli"]
