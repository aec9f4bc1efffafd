"""Write a store as the official ORL JSON file of its kind, streamed image by image and atomically.

The file may carry an extra top-level ``"orl_plugin"`` key (provenance, skipped images; for selective search
also ``"images"``) that the official code ignores, so that store -> JSON -> store is lossless.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any, Union

import numpy as np

from orl_plugin.utils.atomic import atomic_open

from .official_json import META_KEY, Progress

__all__ = ['write_official_json']


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(',', ':'))


def write_official_json(store: Any,
                        path: Union[str, os.PathLike],
                        *,
                        include_meta: bool = True,
                        verbose: bool = False) -> str:
    """Write ``store`` (a ``MiningStore``) as the official JSON of its kind, streaming image by
    image, atomically. Returns the absolute path.

    With ``include_meta`` the file also gets an ``"orl_plugin"`` key (provenance, skipped
    images, params of a selective-search store) and, for selective search, an ``"images"`` key
    when the store has an image list; the official code ignores both.
    """
    path = osp.abspath(os.fspath(path))
    progress = Progress(verbose)
    n = store.num_images
    with atomic_open(path, 'w', encoding='utf-8', buffering=1 << 20) as f:
        w = f.write
        w('{')
        if store.kind != 'selective_search':
            w('"info":' + _dumps(store.params) + ',')
        if store.kind != 'selective_search' or (include_meta and store.has_image_list):
            names = store.file_names()
            ids = np.asarray(store.image_ids).tolist()
            w('"images":{"file_name":' + _dumps(names) + ',"id":' + _dumps(ids) + '},')
            del names
        if store.kind == 'selective_search':
            w('"bbox":[')
            _write_rows(w, store, progress, n, 'bbox')
            w(']')
        else:
            w('"pseudo_annotations":{"image_id":' + _dumps(ids) + ',')
            if store.kind == 'correspondence':
                w('"bbox":[')
                _write_rows(w, store, progress, n, 'bbox')
                w('],')
            w('"knn_image_id":' + _dumps(np.asarray(store.array('knn')).tolist()))
            if store.kind == 'correspondence':
                w(',"knn_bbox_pair":[')
                pdata = store.array('pairs')
                poff = np.asarray(store.array('pair_offsets'))
                k = store.num_neighbours
                for i in progress(range(n), n, 'knn_bbox_pair'):
                    if i:
                        w(',')
                    offs = poff[i * k:(i + 1) * k + 1]
                    block = np.asarray(pdata[offs[0]:offs[-1]]).tolist()
                    rel = (offs - offs[0]).tolist()
                    w('[' + ','.join(_dumps(block[rel[j]:rel[j + 1]]) for j in range(k)) + ']')
                w(']')
            w('}')
        if include_meta:
            meta = dict(provenance=store.provenance, skipped=store.skipped)
            if store.kind == 'selective_search':
                meta['params'] = store.params
            w(',"' + META_KEY + '":' + _dumps(meta))
        w('}\n')
    return path


def _write_rows(w, store: Any, progress, n: int, what: str) -> None:
    data = store.array('boxes')
    off = np.asarray(store.array('box_offsets'))
    for i in progress(range(n), n, what):
        if i:
            w(',')
        w(_dumps(np.asarray(data[off[i]:off[i + 1]]).tolist()))
