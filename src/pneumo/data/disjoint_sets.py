"""Disjoint sets (union-find) over 0..n-1: the near-duplicate groups and the thorax crop's connected
components are both built by joining pairs."""

from __future__ import annotations


class DisjointSets:
    def __init__(self, count: int) -> None:
        self._parent = list(range(count))

    def root(self, item: int) -> int:
        """The representative of ``item``'s set (the smallest member joined so far), halving the path."""
        parent = self._parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def join(self, a: int, b: int) -> None:
        """One set of ``a``'s and ``b``'s; its representative is the smaller of their two."""
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)
