"""The one least-recently-used cache the project uses (text embeddings, image embeddings,
thumbnails, projections). What makes an entry valid is the caller's key; this class only keeps the
newest `capacity` entries, and with `max_bytes` only as many as fit in that many bytes (each entry's
size by `size`, by default its numpy `nbytes`, else sys.getsizeof), and is safe to share between
threads."""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


def nbytes(value: Any) -> int:
    """An entry's size: numpy's nbytes for arrays, a tuple's items counted for token ids, else
    sys.getsizeof."""
    size = getattr(value, "nbytes", None)
    if isinstance(size, int):
        return size
    if isinstance(value, tuple):
        return sys.getsizeof(value) + 32 * len(value)
    return sys.getsizeof(value)


class LRU:
    def __init__(self, capacity: int, max_bytes: int | None = None, size: Callable[[Any], int] = nbytes):
        if capacity < 1:
            raise ValueError("a cache needs room for at least one entry")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._size = size
        self._items: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self.bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value) -> None:
        size = self._size(value) if self.max_bytes is not None else 0
        if self.max_bytes is not None and size > self.max_bytes:
            return  # larger than the whole cache: not kept, and nothing else evicted for it
        with self._lock:
            self.bytes -= self._sizes.pop(key, 0)
            self._items[key] = value
            self._items.move_to_end(key)
            self._sizes[key] = size
            self.bytes += size
            while len(self._items) > self.capacity or (self.max_bytes is not None and
                                                       self.bytes > self.max_bytes):
                old, _ = self._items.popitem(last=False)
                self.bytes -= self._sizes.pop(old, 0)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items
