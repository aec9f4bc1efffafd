"""Writers of the three store kinds (the names the mining evaluators code against)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .format import PathLike, StoreFormatError, as_int_rows, concat_rows, default_provenance
from .mining_store import MiningStore

__all__ = ['write_selective_search_store', 'write_knn_store', 'write_correspondence_store']


def _csr(chunks: Sequence, width: int, name) -> tuple[np.ndarray, np.ndarray]:
    """Per-item (n_i, width) arrays as CSR ``(flat, offsets)``; ``name(i)`` for errors."""
    return concat_rows([as_int_rows(c, width, name(i)) for i, c in enumerate(chunks)], width)


def write_selective_search_store(path: PathLike,
                                 boxes: Sequence[np.ndarray],
                                 *,
                                 file_names: Optional[Sequence[str]] = None,
                                 image_ids: Optional[Sequence[int]] = None,
                                 params: Optional[dict] = None,
                                 provenance: Optional[dict] = None,
                                 skipped: Optional[Sequence[dict]] = None) -> str:
    """Write raw selective-search proposals, ``boxes[i]`` (B_i, 4) xywh, as a store."""
    flat, off = _csr(boxes, 4, lambda i: f'boxes[{i}]')
    store = MiningStore.from_arrays(
        'selective_search',
        image_ids=image_ids,
        file_names=file_names,
        num_images=len(boxes),
        boxes=flat,
        box_offsets=off,
        params=params,
        provenance=default_provenance(provenance),
        skipped=skipped)
    return store.save(path)


def write_knn_store(path: PathLike,
                    knn: np.ndarray,
                    *,
                    file_names: Optional[Sequence[str]] = None,
                    image_ids: Optional[Sequence[int]] = None,
                    params: Optional[dict] = None,
                    provenance: Optional[dict] = None,
                    skipped: Optional[Sequence[dict]] = None) -> str:
    """Write (N, k) neighbour positions as a store; ``params`` default to the official info."""
    knn = np.asarray(knn)
    p = dict(knn_image_num=int(knn.shape[1]) if knn.ndim == 2 else 0)
    p.update(params or {})
    store = MiningStore.from_arrays(
        'knn',
        image_ids=image_ids,
        file_names=file_names,
        num_images=len(knn),
        knn=knn,
        params=p,
        provenance=default_provenance(provenance),
        skipped=skipped)
    return store.save(path)


def write_correspondence_store(path: PathLike,
                               boxes: Sequence[np.ndarray],
                               knn: np.ndarray,
                               pairs: Sequence[Sequence[np.ndarray]],
                               *,
                               file_names: Optional[Sequence[str]] = None,
                               image_ids: Optional[Sequence[int]] = None,
                               params: Optional[dict] = None,
                               provenance: Optional[dict] = None,
                               skipped: Optional[Sequence[dict]] = None) -> str:
    """Write kept boxes, neighbours and ``pairs[i][j]`` (P, 8) per neighbour slot as a store."""
    knn = np.asarray(knn)
    n = len(boxes)
    if knn.shape[0] != n or len(pairs) != n:
        raise StoreFormatError(f'boxes has {n} images, knn {knn.shape[0]}, pairs {len(pairs)}; '
                               'expected one entry per image in each')
    k = knn.shape[1] if knn.ndim == 2 else 0
    cells = []
    for i, row in enumerate(pairs):
        if len(row) != k:
            raise StoreFormatError(f'pairs[{i}] has {len(row)} neighbours, expected {k}')
        cells.extend(row)
    flat_b, off_b = _csr(boxes, 4, lambda i: f'boxes[{i}]')
    flat_p, off_p = _csr(cells, 8, lambda c: f'pairs[{c // k}][{c % k}]')
    p = dict(knn_image_num=int(k))
    p.update(params or {})
    store = MiningStore.from_arrays(
        'correspondence',
        image_ids=image_ids,
        file_names=file_names,
        num_images=n,
        boxes=flat_b,
        box_offsets=off_b,
        knn=knn,
        pairs=flat_p,
        pair_offsets=off_p,
        params=p,
        provenance=default_provenance(provenance),
        skipped=skipped)
    return store.save(path)
