"""Union of candidate sources with per-source quotas and de-duplication (item ids or index positions)."""

from __future__ import annotations

import numpy as np


def union(lists: dict[str, np.ndarray], quotas: dict[str, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge ranked lists of integer items (ids, or positions in an item index).

    Round one takes up to ``quotas[name]`` items from each source in the order of ``quotas``, skipping
    items already taken; round two fills up to ``n`` from the sources' remaining items, same order.

    Returns:
        (items, source) arrays of equal length <= n; ``source`` names the source that contributed each.
    """
    arrays = {name: np.asarray(lists.get(name, np.zeros(0, np.int64)), dtype=np.int64) for name in quotas}
    top = max((int(a.max()) + 1 for a in arrays.values() if a.size), default=0)
    seen = np.zeros(top, bool)  # items are small non-negative integers (ids or index positions)
    taken, names, n_taken = [np.zeros(0, np.int64)], [], 0
    pos = {name: 0 for name in quotas}
    for rnd in (1, 2):
        for name, quota in quotas.items():
            room = n - n_taken
            if room <= 0:
                break
            lst = arrays[name]
            rest = lst[pos[name] :]
            new = ~seen[rest]
            if new.any():  # a repeat within the list counts once, at its first place
                once = np.zeros(rest.size, bool)
                once[np.unique(rest, return_index=True)[1]] = True
                new &= once
            fresh = np.flatnonzero(new)
            budget = min(quota if rnd == 1 else n, room)
            if fresh.size > budget:  # stop right after the last item taken
                fresh = fresh[:budget]
                pos[name] += int(fresh[-1]) + 1 if budget else 0
            else:  # every item of the source is taken now (or was already)
                pos[name] = lst.size
            if fresh.size:
                taken.append(rest[fresh])
                names += [name] * fresh.size
                seen[rest[fresh]] = True
                n_taken += fresh.size
    return np.concatenate(taken), np.asarray(names, dtype=object)
