"""The computation provider role: publish a resource spec (cores, memory, JAX devices, capacity, privacy modes) as an offer."""

from __future__ import annotations

import trio

from dainode.errors import ConfigError
from dainode.roles.offer_role import OfferRole
from dainode.roles.offers import base_document, check_price


class ComputeRole(OfferRole):
    title = "compute provider"
    name = "compute"
    kind = "compute"

    def make_tasks(self):
        from dainode.roles.compute_task import ComputeTasks

        return ComputeTasks(self)

    async def follow(self, nursery: trio.Nursery) -> None:
        await self.tasks.follow(nursery)

    def rpc_methods(self) -> dict:
        return {"offer_create_compute": self.rpc_create}

    async def rpc_create(self, price_wei: str | int, capacity: int = 1) -> dict:
        """Describe this machine, publish and register the compute offer; {offer_id, cid, tx}."""
        self.require_running("offer_create_compute")
        price = check_price(price_wei)
        if not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"capacity must be a whole number of concurrent jobs >= 1, got {capacity!r}", key="capacity")
        from dainode.ml.devices import compute_spec

        spec = await trio.to_thread.run_sync(compute_spec, capacity)
        doc = {**base_document(self.kind, self.ctx, price), **spec}
        return await self.publisher.publish(self.kind, doc)
