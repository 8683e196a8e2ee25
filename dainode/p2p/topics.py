"""Registry of versioned gossip topics (`/dai/<version>/<name>`); later layers register theirs here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dainode.errors import P2PError

PREFIX = "/dai/1/"
OFFERS = "/dai/1/offers"
TASKS = "/dai/1/tasks"
CHAIN = "/dai/1/chain"

_TOPIC_RE = re.compile(r"^/dai/[0-9]+/[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    doc: str


class TopicRegistry:
    """The topics this node joins at start. `register` before the P2P service starts (or it joins immediately)."""

    def __init__(self) -> None:
        self._topics: dict[str, TopicSpec] = {}
        for name, doc in (
            (OFFERS, "data and compute offers"),
            (TASKS, "task announcements and round notices"),
            (CHAIN, "relayed chain events"),
        ):
            self.register(name, doc)

    def register(self, name: str, doc: str = "") -> TopicSpec:
        check_topic_name(name)
        spec = self._topics.setdefault(name, TopicSpec(name, doc))
        return spec

    def __contains__(self, name: object) -> bool:
        return name in self._topics

    def names(self) -> list[str]:
        return list(self._topics)


def check_topic_name(name: str) -> None:
    if not isinstance(name, str) or not _TOPIC_RE.match(name):
        raise P2PError(f"invalid gossip topic {name!r}: expected /dai/<version>/<name> (lower case, e.g. {OFFERS})")
