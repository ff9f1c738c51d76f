"""Near-duplicate groups among embedded images, with the cosines that make them.

Two images are linked when one is among the other's k nearest neighbours (FAISS search) with a
score at or above the threshold; groups are the connected components of these links. Every score
reported is the exact cosine of the two stored (L2-normalised) embeddings, recomputed here, so it
does not depend on the FAISS index type. Because groups are joined by links, a group can be a
chain: its least similar pair (min_score, over all pairs of members) can be below the threshold.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ALL_PAIRS_LIMIT = 2048  # groups up to this many members get min/max over all their pairs


@dataclass(frozen=True)
class DuplicatePair:
    a: str
    b: str
    score: float  # cosine of the two embeddings

    def as_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "score": round(self.score, 6)}


@dataclass(frozen=True)
class DuplicateGroup:
    paths: list[str]                    # sorted
    links: list[DuplicatePair] = field(default_factory=list)  # the pairs that joined the group, best first
    min_score: float = 0.0              # lowest cosine between two members
    max_score: float = 0.0              # highest cosine between two members
    over: str = "all pairs"             # what min/max cover: "all pairs", or "links" for very large groups

    def as_dict(self) -> dict:
        return {"paths": self.paths, "size": len(self.paths), "min_score": round(self.min_score, 6),
                "max_score": round(self.max_score, 6), "scores_over": self.over,
                "pairs": [p.as_dict() for p in self.links]}


def link_pairs(ids: np.ndarray, found, threshold: float, batch: int) -> set[tuple[int, int]]:
    """(low id, high id) for every neighbour at or above `threshold`; `found` is one
    (scores, neighbour ids) FAISS result per batch of `batch` rows of `ids`."""
    links = set()
    for start, (scores, neighbours) in zip(range(0, len(ids), batch), found):
        for own, row_scores, row_ids in zip(ids[start:start + batch], scores, neighbours):
            for score, other in zip(row_scores, row_ids):
                if other >= 0 and other != own and score >= threshold:
                    links.add((min(int(own), int(other)), max(int(own), int(other))))
    return links


def components(ids: np.ndarray, links: set[tuple[int, int]]) -> list[list[int]]:
    """The connected components with more than one member (union-find over the links)."""
    parent = {int(i): int(i) for i in ids}

    def root_of(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        ra, rb = root_of(a), root_of(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(root_of(i), []).append(i)
    return [members for members in groups.values() if len(members) > 1]


def scored_groups(ids: np.ndarray, vectors: np.ndarray, links: set[tuple[int, int]],
                  names: dict[int, str]) -> list[DuplicateGroup]:
    """The groups, each with its links' cosines and its min/max cosine; sorted by size (largest
    first), then first path."""
    row = {int(i): n for n, i in enumerate(ids)}
    by_member: dict[int, list[tuple[int, int]]] = {}
    for a, b in links:
        by_member.setdefault(a, []).append((a, b))
    out = []
    for members in components(ids, links):
        pairs = [DuplicatePair(names[a], names[b], float(vectors[row[a]] @ vectors[row[b]]))
                 for m in members for a, b in by_member.get(m, ())]
        pairs = [DuplicatePair(*sorted((p.a, p.b)), p.score) for p in pairs]
        pairs.sort(key=lambda p: (-p.score, p.a, p.b))
        if len(members) <= ALL_PAIRS_LIMIT:
            block = vectors[[row[m] for m in members]]
            cos = block @ block.T
            upper = cos[np.triu_indices(len(members), k=1)]
            low, high, over = float(upper.min()), float(upper.max()), "all pairs"
        else:
            low, high, over = pairs[-1].score, pairs[0].score, "links"
        out.append(DuplicateGroup(sorted(names[m] for m in members), pairs, low, high, over))
    return sorted(out, key=lambda g: (-len(g.paths), g.paths[0]))
