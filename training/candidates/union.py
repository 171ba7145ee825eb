"""Union of candidate sources with per-source quotas and de-duplication."""

from __future__ import annotations

import numpy as np


def union(lists: dict[str, np.ndarray], quotas: dict[str, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge ranked item lists.

    Round one takes up to ``quotas[name]`` items from each source in the order of ``quotas``, skipping
    items already taken; round two fills up to ``n`` from the sources' remaining items, same order.

    Returns:
        (items, source) arrays of equal length <= n; ``source`` names the source that contributed each.
    """
    taken: dict = {}
    pos = {name: 0 for name in quotas}
    for rnd in (1, 2):
        for name, quota in quotas.items():
            items = lists.get(name, np.zeros(0))
            budget = quota if rnd == 1 else n
            got = 0
            while pos[name] < len(items) and got < budget and len(taken) < n:
                it = items[pos[name]].item() if hasattr(items[pos[name]], "item") else items[pos[name]]
                pos[name] += 1
                if it not in taken:
                    taken[it] = name
                    got += 1
    return np.asarray(list(taken.keys())), np.asarray(list(taken.values()), dtype=object)
