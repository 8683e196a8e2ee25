"""The computation provider role: publish a resource spec (cores, memory, JAX devices, capacity, privacy modes) as an offer."""

from __future__ import annotations

import os

import trio

from dainode.errors import ConfigError
from dainode.roles.base import Role
from dainode.roles.offers import OfferPublisher, base_document, check_price
from dainode.roles.taskdocs import node_roles, retrying


class ComputeRole(Role):
    name = "compute"
    kind = "compute"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.publisher = OfferPublisher(ctx)
        self.auto_withdraw = os.environ.get("DAINODE_TASK_AUTO_WITHDRAW", "1") != "0"
        node_roles(ctx).add(self.name)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.check()
        from dainode.roles.compute_task import ComputeTasks
        from dainode.roles.negotiate import negotiator
        from dainode.roles.taskchain import TaskChain

        self.tasks = ComputeTasks(self)
        self.tasks.start(TaskChain(self.ctx.chain), negotiator(self.ctx))
        async with trio.open_nursery() as nursery:
            task_status.started()
            nursery.start_soon(self.publisher.resume_all, self.kind)
            nursery.start_soon(retrying, "compute provider", self.tasks.follow, nursery)
            await trio.sleep_forever()

    def rpc_methods(self) -> dict:
        return {"offer_create_compute": self.rpc_create}

    async def rpc_create(self, price_wei: str | int, capacity: int = 1) -> dict:
        """Describe this machine, publish and register the compute offer; {offer_id, cid, tx}."""
        self.require_running("offer_create_compute")
        price = check_price(price_wei)
        if not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"capacity must be a whole number of concurrent jobs >= 1, got {capacity!r}", key="capacity")
        from dainode.ml.devices import compute_spec  # jax: only when an offer is made

        spec = await trio.to_thread.run_sync(compute_spec, capacity)
        doc = {**base_document(self.kind, self.ctx, price), **spec}
        return await self.publisher.publish(self.kind, doc)
