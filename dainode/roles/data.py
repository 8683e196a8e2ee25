"""The data provider role: pre-process a dataset locally, publish its schema document, register and announce the offer."""

from __future__ import annotations

import trio

from dainode.errors import ConfigError
from dainode.roles.offer_role import OfferRole
from dainode.roles.offers import base_document, check_price


class DataRole(OfferRole):
    title = "data provider"
    name = "data"
    kind = "data"

    def make_tasks(self):
        from dainode.roles.data_task import DataTasks

        return DataTasks(self)

    def rpc_methods(self) -> dict:
        return {"offer_create_data": self.rpc_create}

    async def rpc_create(self, dataset: str, price_wei: str | int, label: str | None = None, shards: int = 1) -> dict:
        """Pre-process `dataset` (built-in name or a file on this machine), publish and register it; {offer_id, cid, tx}."""
        self.require_running("offer_create_data")
        price = check_price(price_wei)
        if not isinstance(dataset, str) or not dataset:
            raise ConfigError("dataset must be a built-in name (digits, breast_cancer, iris, wine) or a file path", key="dataset")
        from dainode.ml.dataoffer import data_offer_document  # numpy/sklearn: only when an offer is made

        # Everything is checked before anything is published: a bad dataset raises DatasetError here.
        data = await trio.to_thread.run_sync(lambda: data_offer_document(dataset, label=label, shards=int(shards)))
        doc = {**base_document(self.kind, self.ctx, price), **data}
        # which rows the offer stands for, so a match can provide them (the path stays on this node)
        from dainode.roles.data_task import SOURCE_KIND, source_step_id

        src = source_step_id(self.publisher.step_id(self.kind, doc))
        self.ctx.state.begin_step(src, SOURCE_KIND, {"dataset": dataset, "label": label})
        self.ctx.state.finish_step(src, {})
        return await self.publisher.publish(self.kind, doc)
