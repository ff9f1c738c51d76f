"""Unit vectors, without torch: the one `normalize` every numeric module uses (model.py's encoders,
zero-shot, few-shot, the gap, FAISS queries). Kept apart from model.py so that importing the
science and index modules does not import torch."""
from __future__ import annotations

import numpy as np


def normalize(x, axis: int = -1) -> np.ndarray:
    """`x` scaled to unit length along `axis`, as contiguous float32 (zero vectors stay zero). Every
    numeric module compares embeddings, class vectors, queries and shifted points by cosine, so they
    are all kept at unit length with this one function."""
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12))
