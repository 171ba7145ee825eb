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
    taken, names = [np.zeros(0, np.int64)], []
    seen = np.zeros(0, np.int64)
    pos = {name: 0 for name in quotas}
    for rnd in (1, 2):
        for name, quota in quotas.items():
            room = n - seen.size
            if room <= 0:
                break
            lst = np.asarray(lists.get(name, np.zeros(0, np.int64)), dtype=np.int64)
            rest = lst[pos[name] :]
            fresh = np.flatnonzero(~np.isin(rest, seen))
            budget = min(quota if rnd == 1 else n, room)
            if fresh.size > budget:  # stop right after the last item taken
                fresh = fresh[:budget]
                pos[name] += int(fresh[-1]) + 1 if budget else 0
            else:  # every item of the source is taken now (or was already)
                pos[name] = lst.size
            if fresh.size:
                taken.append(rest[fresh])
                names += [name] * fresh.size
                seen = np.concatenate([seen, rest[fresh]])
    return np.concatenate(taken), np.asarray(names, dtype=object)
