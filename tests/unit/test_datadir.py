"""The data-dir lock: one holder at a time, released on close, pid recorded."""

from __future__ import annotations

import pytest

from dainode.datadir import LOCK_FILE, DataDirLock
from dainode.errors import DainodeError


def test_one_holder_at_a_time(tmp_path):
    first = DataDirLock(tmp_path).acquire()
    assert first.held and (tmp_path / LOCK_FILE).read_text().strip().isdigit()
    with pytest.raises(DainodeError, match="another dainode is running"):
        DataDirLock(tmp_path).acquire()  # another open file description: refused, as another process would be
    first.release()
    with DataDirLock(tmp_path) as again:
        assert again.held
    assert not again.held
