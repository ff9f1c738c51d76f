"""L2 normalisation, the one helper every numeric module shares: embeddings, class vectors, queries
and shifted points are all compared by cosine, so they are all kept at unit length."""
from __future__ import annotations

import numpy as np


def normalize(x, axis: int = -1) -> np.ndarray:
    """`x` scaled to unit length along `axis`, as contiguous float32 (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12))
