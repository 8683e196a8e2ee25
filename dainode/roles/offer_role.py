"""What the data and compute roles share: an offer publisher, a task follower, and their run loop."""

from __future__ import annotations

import os
from abc import abstractmethod

import trio

from dainode.roles.base import Role
from dainode.roles.offers import OfferPublisher
from dainode.roles.taskdocs import node_roles, retrying


class OfferRole(Role):
    """A role that sells something through offers (its `kind`) and then takes part in the tasks that match them."""

    kind: str
    title: str  # for logs: "data provider", "compute provider"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.publisher = OfferPublisher(ctx)
        self.auto_withdraw = os.environ.get("DAINODE_TASK_AUTO_WITHDRAW", "1") != "0"
        node_roles(ctx).add(self.name)

    @abstractmethod
    def make_tasks(self):
        """The object that follows this role's tasks on chain (DataTasks, ComputeTasks)."""

    async def follow(self, nursery: trio.Nursery) -> None:
        await self.tasks.follow()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.check()
        from dainode.roles.negotiate import negotiator
        from dainode.roles.taskchain import TaskChain

        self.tasks = self.make_tasks()
        self.tasks.start(TaskChain(self.ctx.chain), negotiator(self.ctx))
        async with trio.open_nursery() as nursery:
            task_status.started()
            nursery.start_soon(self.publisher.resume_all, self.kind)
            nursery.start_soon(retrying, self.title, self.follow, nursery)
            await trio.sleep_forever()
