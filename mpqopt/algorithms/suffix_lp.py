"""The LP relaxation of a shrinking set of groups, as a function of capacity, for many capacities at once.

With one budget the LP optimum of a set of groups at capacity ``room`` takes their hull increments
greedily by efficiency and a fraction of the first one that does not fit: a convex piecewise-linear
function, read off the prefix sums of the increments with ``np.interp``. A search that decides groups
one after another needs that function for the groups it has *not* decided yet, at every state's own
leftover capacity. Precomputed tables for every step cost ``steps x increments`` memory (what kept
this bound off large cores, which fell back to a weaker one); here the prefix sums are rebuilt from
the remaining increments when groups are decided, which costs ``O(remaining)`` per step, less than
one query over a search's states, and memory ``O(increments)``.

>>> import numpy as np
>>> lp = SuffixLP(dcost=np.array([1.0, 2.0, 4.0]), dvalue=np.array([-3.0, -4.0, -4.0]), group=np.array([0, 1, 0]))
>>> lp(np.array([0.0, 1.0, 2.0, 10.0])).tolist()  # increments by efficiency 3, 2, 1
[0.0, -3.0, -5.0, -11.0]
>>> lp.remove_through(0)  # group 0 decided: only the middle increment is left
>>> lp(np.array([1.0, 10.0])).tolist()
[-2.0, -4.0]
"""

from __future__ import annotations

import numpy as np


class SuffixLP:
    """Least total ``dvalue`` of fractional increments within a capacity, over the groups not yet removed.

    ``dcost`` (> 0), ``dvalue`` (<= 0) and ``group`` describe the hull increments sorted by decreasing
    efficiency ``-dvalue / dcost`` (as :func:`mpqopt.algorithms.hull.hull_increments` returns them).
    """

    def __init__(self, dcost: np.ndarray, dvalue: np.ndarray, group: np.ndarray):
        self._dcost, self._dvalue, self._group = np.asarray(dcost), np.asarray(dvalue), np.asarray(group)
        self._through = -np.inf
        self._tabulate()

    def _tabulate(self) -> None:
        self._cum_cost = np.concatenate([[0.0], np.cumsum(self._dcost)])
        self._cum_value = np.concatenate([[0.0], np.cumsum(self._dvalue)])

    def remove_through(self, group: int) -> None:
        """Drop every increment of the groups numbered ``<= group`` (calls come in increasing order)."""
        if group < self._through:
            raise ValueError("SuffixLP.remove_through must be called with increasing groups")
        self._through = group
        keep = self._group > group
        if keep.all():
            return
        self._dcost, self._dvalue, self._group = self._dcost[keep], self._dvalue[keep], self._group[keep]
        self._tabulate()

    def __call__(self, room: np.ndarray) -> np.ndarray:
        """The LP value (<= 0) of the remaining increments at each capacity ``room`` (>= 0); past
        their total cost, all of them."""
        return np.interp(room, self._cum_cost, self._cum_value)
