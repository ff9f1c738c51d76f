"""The one least-recently-used cache the project uses (text embeddings, image embeddings,
thumbnails, projections). What makes an entry valid is the caller's key; this class only keeps the
newest `capacity` entries and is safe to share between threads."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable


class LRU:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("a cache needs room for at least one entry")
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default=None):
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items
