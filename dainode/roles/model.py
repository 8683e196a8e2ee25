"""The model provider role: opens training tasks (issue 13); today it claims its layers and reads the offer index."""

from __future__ import annotations

import trio

from dainode.roles.base import Role


class ModelRole(Role):
    """Needs the chain (tasks, escrow). Matching and rounds build on the offer index and State (see ARCHITECTURE.md)."""

    name = "model"

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.check()
        task_status.started()
        await trio.sleep_forever()
