"""The Role base: a Service the node starts after the layers it needs, with a RoleContext."""

from __future__ import annotations

from typing import Any

from dainode.errors import ConfigError
from dainode.service import Service


class Role(Service):
    """A node role (data, compute, model). `requires` names the layers it needs; `check()` refuses to run
    without them, naming the flag to set. Admin RPC methods come from `rpc_methods()`."""

    #: layers the role needs besides p2p/store/state, which every node has
    requires: tuple[str, ...] = ("chain",)

    def __init__(self, ctx):
        self.ctx = ctx

    def check(self) -> None:
        if "chain" in self.requires:
            self.ctx.require_chain(self.name)

    def rpc_methods(self) -> dict[str, Any]:
        return {}


def role_classes() -> dict[str, type[Role]]:
    from dainode.roles.compute import ComputeRole
    from dainode.roles.data import DataRole
    from dainode.roles.model import ModelRole

    return {"data": DataRole, "compute": ComputeRole, "model": ModelRole}


def build_roles(names: list[str], ctx) -> list[Role]:
    """The roles named by --roles/config, each checked against the node's layers (ConfigError names the flag)."""
    classes = role_classes()
    roles = []
    for name in names:
        if name not in classes:
            raise ConfigError(f"unknown role {name!r}; use any of {', '.join(sorted(classes))}", key="roles")
        role = classes[name](ctx)
        role.check()
        roles.append(role)
    return roles
