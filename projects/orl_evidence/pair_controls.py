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


def object_pairs_store(src: str, ann_file: str, out: str) -> str:
    """A diagnostic, not ORL (it reads the ground truth): the mined pairs of ``src`` whose two boxes
    both lie on a ground-truth object of the same category (IoU >= 0.5, the mining metrics' rule),
    everything else of the store unchanged. Stage 3 on it shows what the inter-RoI branch does when
    its non-object pairs are taken away."""
    import json

    from orl_plugin.evaluation.box_metrics import matched_gt_labels, xywh_to_xyxy

    store = MiningStore.open(src)
    with open(ann_file) as f:
        ann = json.load(f)
    by_name = {im['file_name']: im['id'] for im in ann['images']}
    gt: dict = {im['id']: ([], []) for im in ann['images']}
    for a in ann['annotations']:
        gt[a['image_id']][0].append(a['bbox'])
        gt[a['image_id']][1].append(a['category_id'])

    def matches(i: int, boxes: np.ndarray) -> np.ndarray:
        bxs, labels = gt[by_name[store.file_name(i)]]
        if not bxs:
            return np.zeros((len(boxes), 1), bool)
        return matched_gt_labels(boxes, xywh_to_xyxy(np.asarray(bxs, np.float64)), np.asarray(labels))

    n = len(store)
    knn = np.stack([np.asarray(store.knn(i)) for i in range(n)])
    pairs = []
    for i in range(n):
        row = []
        for j, nb in enumerate(knn[i]):
            p = np.asarray(store.pairs(i, j)).reshape(-1, 8)
            mq, mn = matches(i, p[:, :4]), matches(int(nb), p[:, 4:])
            width = min(mq.shape[1], mn.shape[1])
            keep = (mq[:, :width] & mn[:, :width]).any(axis=1) if len(p) else np.zeros(0, bool)
            row.append(p[keep].astype(np.int64))
        pairs.append(row)
    return write_correspondence_store(
        out, [np.asarray(store.boxes(i)) for i in range(n)],
        knn,
        pairs,
        file_names=store.file_names(),
        image_ids=[int(v) for v in store.image_ids],
        params=dict(store.params),
        provenance=dict(control='mined pairs on same-category ground-truth objects only (reads labels)', source=src))
