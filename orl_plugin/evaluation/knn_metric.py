"""``KNNMetric``: exact cosine k-nearest-neighbour image retrieval (stage 2a) and its quality."""
from typing import List, Optional, Union

import numpy as np
from mmengine.logging import print_log
from mmpretrain.registry import METRICS

from orl_plugin.store import write_knn_store

from .mining_metric import MiningMetric

# faiss GPU indexes return at most this many neighbours per query.
_GPU_MAX_K = 2048


def _faiss_gpu_available() -> bool:
    try:
        import faiss
        import torch
    except ImportError:
        return False
    return (hasattr(faiss, 'StandardGpuResources') and faiss.get_num_gpus() > 0 and torch.cuda.is_available())


def exact_knn(feats: np.ndarray, k: int, use_gpu: bool = False, margin: int = 16) -> np.ndarray:
    """The ``k`` nearest OTHER rows of every row by inner product, ``(N, k)`` int64.

    Exact (faiss ``IndexFlatIP``). The query is excluded by its index, not by dropping the top
    hit, so duplicates (equal scores) cannot make a row its own neighbour. Ties are broken by
    the lower index: the search asks for ``k + 1 + margin`` hits and widens it for the rows
    whose k-th score ties with the last hit returned, until the order is decided.
    """
    import faiss
    x = np.ascontiguousarray(feats, dtype=np.float32)
    n, d = x.shape
    if n < k + 1:
        raise ValueError(f'KNN with k={k} needs at least {k + 1} images, got {n}')
    cpu_index = faiss.IndexFlatIP(d)
    cpu_index.add(x)
    gpu_index = None
    if use_gpu:
        res = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(res, 0, cpu_index)
    out = np.empty((n, k), dtype=np.int64)
    pending = np.arange(n)
    kk = min(n, k + 1 + margin)
    while pending.size:
        index = gpu_index if gpu_index is not None and kk <= _GPU_MAX_K else cpu_index
        scores, ids = index.search(x[pending], kk)
        undecided = []
        for q, s_row, i_row in zip(pending, scores, ids):
            keep = (i_row != q) & (i_row >= 0)
            cand, cs = i_row[keep], s_row[keep]
            # Unless every row was returned, the k-th candidate must beat the last hit
            # strictly: then nothing tied with it was left out.
            if kk < n and (len(cand) < k or not cs[k - 1] > s_row[-1]):
                undecided.append(q)
                continue
            out[q] = cand[np.lexsort((cand, -cs))[:k]]
        pending = np.asarray(undecided, dtype=np.int64)
        kk = min(n, kk * 4)
    return out


def category_precision(labels: List[np.ndarray],
                       knn: np.ndarray,
                       queries: np.ndarray,
                       candidates: Optional[np.ndarray] = None,
                       max_random_queries: int = 2000) -> dict:
    """Fraction of neighbours sharing at least one GT category with the query.

    ``labels[i]``: GT category indices of image i; ``queries``: rows to score (images with
    annotations). Returns precision over all k neighbours and over the first one. With
    ``candidates`` (the images a neighbour can be) it also returns ``category_precision_random``:
    the same figure for a neighbour drawn uniformly from the candidates other than the query, the
    level retrieval has to beat - exact for up to ``max_random_queries`` queries, else the mean
    over that many queries drawn with a fixed seed (the all-pairs count is quadratic).
    """
    sets = [frozenset(np.asarray(lab).reshape(-1).tolist()) for lab in labels]
    hits = np.array([[bool(sets[q] & sets[j]) for j in knn[q]] for q in queries], dtype=bool)
    if hits.size == 0:
        return {}
    out = {f'category_precision@{knn.shape[1]}': float(hits.mean()), 'category_precision@1': float(hits[:, 0].mean())}
    if candidates is not None and len(candidates) > 1:
        num_cls = max((max(st) for st in sets if st), default=-1) + 1
        onehot = np.zeros((len(labels), num_cls), dtype=np.float32)
        for i, st in enumerate(sets):
            onehot[i, list(st)] = 1.0
        sample = queries
        if len(sample) > max_random_queries:
            sample = np.sort(np.random.default_rng(0).choice(queries, max_random_queries, replace=False))
        cand = onehot[candidates]
        shared = 0.0
        for s in range(0, len(sample), 256):  # blocks keep the (queries x candidates) matrix small
            q = sample[s:s + 256]
            # the query is a candidate that always shares with itself: take it out
            shared += float(((onehot[q] @ cand.T) > 0).sum()) - int((np.isin(q, candidates) & onehot[q].any(1)).sum())
        out['category_precision_random'] = shared / (len(sample) * (len(candidates) - 1))
    return out


@METRICS.register_module()
class KNNMetric(MiningMetric):
    """Gather image embeddings, find each image's ``k`` nearest other images, write the store.

    Neighbours are 0-based positions in the image list (as the official ORL KNN file).
    Skipped (unreadable) images are never anyone's neighbour; their own row holds their own
    index ``k`` times (the store needs valid positions), and they are listed in the header's
    ``skipped``. With ground truth, reports the fraction of neighbours that share at least one
    category with the query (over queries with annotations), and that fraction for a random neighbour.

    Args:
        out_file (str): Output store (``<data_root>/orl/knn.orlstore``).
        json_file (str, optional): Also write the official KNN JSON.
        k (int): Neighbours per image (ORL: 10).
        use_gpu (bool | 'auto'): faiss GPU index ('auto': when faiss has GPUs and CUDA is up).
    """

    result_keys = ('embedding', )
    default_prefix = 'knn'

    def __init__(self,
                 out_file: str,
                 json_file: Optional[str] = None,
                 k: int = 10,
                 use_gpu: Union[bool, str] = 'auto',
                 **kwargs) -> None:
        super().__init__(out_file=out_file, json_file=json_file, **kwargs)
        if k < 1:
            raise ValueError(f'k must be >= 1, got {k}')
        if use_gpu not in (True, False, 'auto'):
            raise ValueError(f"use_gpu must be True, False or 'auto', got {use_gpu!r}")
        self.k = k
        self.use_gpu = use_gpu

    def compute_metrics(self, results: List[dict]) -> dict:
        results = self.ordered(results)
        n = len(results)
        valid = np.array([i for i, r in enumerate(results) if not self.is_skipped(r)], dtype=np.int64)
        if valid.size < self.k + 1:
            raise ValueError(f'KNN with k={self.k} needs at least {self.k + 1} readable images, '
                             f'got {valid.size} of {n}')
        feats = np.stack([np.asarray(results[i]['embedding'], dtype=np.float32) for i in valid])
        bad = ~np.isfinite(feats).all(axis=1)
        if bad.any():  # faiss would return no neighbours for them; say why instead
            first = results[int(valid[np.flatnonzero(bad)[0]])]
            raise ValueError(f'KNN: {int(bad.sum())} of {len(feats)} image embeddings are not finite (NaN/inf), '
                             f'the first of image {first.get("img_path") or first.get("file_name")!r}: the stage-1 '
                             'model gives NaN features (a diverged training, e.g. BN statistics of a tiny last '
                             'batch); check its checkpoint')
        use_gpu = _faiss_gpu_available() if self.use_gpu == 'auto' else bool(self.use_gpu)
        knn = np.repeat(np.arange(n, dtype=np.int64)[:, None], self.k, axis=1)
        knn[valid] = valid[exact_knn(feats, self.k, use_gpu=use_gpu)]

        names, ids = self.image_list(results)
        skipped = self.skipped_list(results)
        path = write_knn_store(
            self.out_file,
            knn,
            file_names=names,
            image_ids=ids,
            params=dict(knn_image_num=self.k),
            provenance=self.provenance(),
            skipped=skipped)
        json_path = self.write_json(path)
        print_log(
            f'knn: {n} images, {len(skipped)} skipped, k={self.k} -> {path}' +
            (f' and {json_path}' if json_path else ''),
            logger='current')

        metrics = dict(num_images=n, num_skipped=len(skipped))
        labels = [np.asarray(r.get('gt_labels', []), dtype=np.int64) for r in results]
        queries = np.array([i for i in valid if labels[i].size], dtype=np.int64)
        metrics.update(category_precision(labels, knn, queries, candidates=valid))
        if not queries.size:
            self.note_no_ground_truth('category precision')
        return metrics
