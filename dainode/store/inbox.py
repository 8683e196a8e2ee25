"""Pushed documents: whole files a peer sent ahead of the chain event naming them, held in memory by their CID."""

from __future__ import annotations

from collections import OrderedDict

import trio

#: Bytes of pushed documents kept at most (oldest dropped first; a dropped one is fetched by CID as before).
MAX_BYTES = 64 << 20


class Inbox:
    """Verified bytes by CID string, plus waiters: a fetch that started before the push arrived takes it too.

    Only bytes the caller checked against the CID go in (`put`): whatever reads them here gets exactly
    what the CID names, as from the blockstore. Nothing is written to disk: the producer pins its own
    documents, and a node reading a round's model or update never has to serve it.
    """

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self._docs: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._waiters: dict[str, list] = {}  # cid -> [event, number of waiting fetches]
        self.hits = 0
        self.puts = 0

    def __contains__(self, cid: str) -> bool:
        return str(cid) in self._docs

    def __len__(self) -> int:
        return len(self._docs)

    def put(self, cid: str, data: bytes) -> None:
        """Hold `data` (already checked to hash to `cid`) and wake fetches waiting for it."""
        key = str(cid)
        if len(data) > self.max_bytes:
            return
        if key in self._docs:
            self._docs.move_to_end(key)
        else:
            self._docs[key] = bytes(data)
            self._size += len(data)
            self.puts += 1
            while self._size > self.max_bytes:
                _, old = self._docs.popitem(last=False)
                self._size -= len(old)
        entry = self._waiters.pop(key, None)
        if entry is not None:
            entry[0].set()

    def get(self, cid: str) -> bytes | None:
        data = self._docs.get(str(cid))
        if data is not None:
            self._docs.move_to_end(str(cid))
            self.hits += 1
        return data

    async def wait(self, cid: str) -> bytes:
        """The bytes of `cid` once pushed (forever if never: run it against a fetch and cancel)."""
        key = str(cid)
        while True:
            data = self.get(key)
            if data is not None:
                return data
            entry = self._waiters.setdefault(key, [trio.Event(), 0])
            entry[1] += 1
            try:
                await entry[0].wait()
            finally:
                entry[1] -= 1
                if entry[1] <= 0 and self._waiters.get(key) is entry:
                    del self._waiters[key]  # a cancelled fetch leaves nothing behind

    def stat(self) -> dict:
        return {"docs": len(self._docs), "bytes": self._size, "puts": self.puts, "hits": self.hits,
                "waiting": len(self._waiters)}
