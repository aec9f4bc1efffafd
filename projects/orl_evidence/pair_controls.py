"""Control pairs for the stage-3 arms: random pairs of the same kept boxes of the same neighbours."""
from __future__ import annotations

import numpy as np

from orl_plugin.store import MiningStore, write_correspondence_store


def random_pairs_store(src: str, out: str, seed: int = 0) -> str:
    """Write, beside a mined correspondence store ``src``, a store with the same kept boxes, the
    same neighbour lists and as many pairs per neighbour, each pair a uniformly random kept box
    of the query and one of the neighbour: what stage 3 learns from it is not from mining."""
    store = MiningStore.open(src)
    rng = np.random.default_rng(seed)
    n = len(store)
    boxes = [np.asarray(store.boxes(i)) for i in range(n)]
    knn = np.stack([np.asarray(store.knn(i)) for i in range(n)]) if n else np.zeros((0, 0), np.int64)
    pairs = []
    for i in range(n):
        row = []
        for j, nb in enumerate(knn[i]):
            count = store.num_pairs(i, j)
            if count == 0 or not len(boxes[i]) or not len(boxes[nb]):
                row.append(np.zeros((0, 8), np.int64))
                continue
            q = boxes[i][rng.integers(len(boxes[i]), size=count)]
            r = boxes[nb][rng.integers(len(boxes[nb]), size=count)]
            row.append(np.concatenate([q, r], axis=1).astype(np.int64))
        pairs.append(row)
    names = store.file_names() if store.has_image_list else None
    ids = [int(v) for v in store.image_ids] if store.has_image_list else None
    return write_correspondence_store(
        out,
        boxes,
        knn,
        pairs,
        file_names=names,
        image_ids=ids,
        params=dict(store.params),
        provenance=dict(control='random pairs of the same kept boxes of the same neighbours', source=src, seed=seed))
