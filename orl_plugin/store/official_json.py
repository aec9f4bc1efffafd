"""Read the official ORL JSON files (column-oriented; ``official_json_writer`` writes them).

- KNN: ``{"info": {"knn_image_num": k}, "images": {"file_name": [...], "id": [...]},
  "pseudo_annotations": {"image_id": [...], "knn_image_id": [[k positions], ...]}}``
- selective search: ``{"bbox": [[[x, y, w, h], ...] per image]}``, aligned by position with the data
  set's image list (no image list of its own; pass ``images=`` to attach one).
- correspondence: ``{"info": {...6 fields...}, "images": {...}, "pseudo_annotations": {"image_id", "bbox",
  "knn_image_id", "knn_bbox_pair": [[[[8 numbers], ...] per neighbour] per image]}}``

Reading validates everything (errors name the file's full path and the field) and gives the parts of an
in-memory store; ``MiningStore.open(path.json)`` opens one.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any, Optional, Sequence, Union

import numpy as np

from .format import KINDS, OfficialFormatError, StoreParts, build_parts, concat_rows
from .image_list import load_image_list

__all__ = ['CORRESPONDENCE_INFO_FIELDS', 'detect_kind', 'parse_official_json', 'parse_official_dict']

CORRESPONDENCE_INFO_FIELDS = ('bbox_min_size', 'bbox_max_aspect_ratio', 'bbox_max_iou', 'intra_bbox_num',
                              'knn_image_num', 'knn_bbox_pair_ratio')
META_KEY = 'orl_plugin'

ImagesArg = Union[None, str, Sequence[str], tuple]


def _resolve_images(images: ImagesArg) -> Optional[tuple[list, np.ndarray]]:
    if images is None:
        return None
    if isinstance(images, tuple) and len(images) == 2 and not isinstance(images[0], str):
        names, ids = images
        return list(names), np.asarray(ids, dtype=np.int64)
    return load_image_list(images)


def detect_kind(data: Any, name: str = '<json>') -> str:
    """'selective_search', 'knn' or 'correspondence' from the keys of a parsed file."""
    if not isinstance(data, dict):
        raise OfficialFormatError(f'{name}: top level is {type(data).__name__}, expected an '
                                  'object')
    pa = data.get('pseudo_annotations')
    if isinstance(pa, dict):
        return 'correspondence' if 'knn_bbox_pair' in pa or 'bbox' in pa else 'knn'
    if 'bbox' in data:
        return 'selective_search'
    raise OfficialFormatError(f'{name}: neither "pseudo_annotations" (KNN / correspondence) nor '
                              '"bbox" (selective search) found')


def parse_official_json(path: Union[str, os.PathLike],
                        *,
                        kind: Optional[str] = None,
                        images: ImagesArg = None,
                        verbose: bool = False) -> StoreParts:
    """Parse and validate an official ORL JSON file (use ``MiningStore.open`` to get a store).

    Args:
        path: the .json file.
        kind: expected kind (auto-detected when None).
        images: image list for selective search (COCO JSON path(s), image folder, or
            ``(file_names, ids)``); for KNN/correspondence it is checked against the file's.
        verbose: print what is being parsed (COCO-size files take minutes).
    """
    name = osp.abspath(os.fspath(path))
    if verbose:
        print(f'parsing {name} ({osp.getsize(name) / 2**20:.0f} MiB) with json ...', flush=True)
    try:
        with open(name, encoding='utf-8') as f:
            data = json.load(f)
    except ValueError as e:
        raise OfficialFormatError(f'{name}: not valid JSON ({e})') from None
    return parse_official_dict(data, name, kind=kind, images=images, verbose=verbose)


def _field(d: Any, key: str, name: str, where: str, types: Any = None) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise OfficialFormatError(f'{name}: field "{where + key}" is missing')
    v = d[key]
    if types is not None and not isinstance(v, types):
        tn = types.__name__ if isinstance(types, type) else '/'.join(t.__name__ for t in types)
        raise OfficialFormatError(f'{name}: field "{where + key}" is {type(v).__name__}, '
                                  f'expected {tn}')
    return v


def _rows(item: Any, width: int, name: str, field: str) -> np.ndarray:
    """One image's list of width-number rows as an int64 (n, width) array, or a precise error."""
    if not isinstance(item, list):
        raise OfficialFormatError(f'{name}: {field} is {type(item).__name__}, expected a list')
    if not item:
        return np.zeros((0, width), np.int64)
    try:
        a = np.array(item)
    except ValueError:
        a = None
    if a is None or a.ndim != 2 or a.shape[1] != width:
        for r, row in enumerate(item):
            if not isinstance(row, list):
                raise OfficialFormatError(f'{name}: {field}[{r}] is {type(row).__name__}, '
                                          f'expected a list of {width} numbers')
            if len(row) != width:
                raise OfficialFormatError(f'{name}: {field}[{r}] has {len(row)} numbers, '
                                          f'expected {width}')
        raise OfficialFormatError(f'{name}: {field} is not a list of rows of {width} numbers')
    if a.dtype.kind == 'f':
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
            r = int(np.flatnonzero((a != np.round(a)).any(1) | ~np.isfinite(a).all(1))[0])
            raise OfficialFormatError(f'{name}: {field}[{r}] = {item[r]} has non-integer values '
                                      '(ORL boxes are integer pixels)')
        a = a.astype(np.int64)
    elif a.dtype.kind not in 'iu':
        r = next(r for r, row in enumerate(item)
                 if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row))
        raise OfficialFormatError(f'{name}: {field}[{r}] = {item[r]!r} is not all numbers')
    return a


def _image_list(data: dict, name: str, n_expected: Optional[int]) -> tuple[list, np.ndarray]:
    images = _field(data, 'images', name, '', dict)
    fns = _field(images, 'file_name', name, 'images.', list)
    ids = _field(images, 'id', name, 'images.', list)
    if len(fns) != len(ids):
        raise OfficialFormatError(f'{name}: images.file_name has {len(fns)} entries but '
                                  f'images.id has {len(ids)}')
    for i, s in enumerate(fns):
        if not isinstance(s, str):
            raise OfficialFormatError(f'{name}: images.file_name[{i}] is {type(s).__name__}, '
                                      'expected str')
    for i, v in enumerate(ids):
        if not isinstance(v, int) or isinstance(v, bool):
            raise OfficialFormatError(f'{name}: images.id[{i}] = {v!r} is not an int')
    if n_expected is not None and len(fns) != n_expected:
        raise OfficialFormatError(f'{name}: images lists {len(fns)} images, expected '
                                  f'{n_expected}')
    return fns, np.asarray(ids, dtype=np.int64)


def _check_against(name: str, fns: list, ids: np.ndarray, given: tuple) -> None:
    gfns, gids = given
    if len(gfns) != len(fns):
        raise OfficialFormatError(f'{name}: has {len(fns)} images but the given image list has '
                                  f'{len(gfns)}')
    for i, (a, b) in enumerate(zip(fns, gfns)):
        if a != b:
            raise OfficialFormatError(f'{name}: images.file_name[{i}] = {a!r} but the given '
                                      f'image list has {b!r} there')


def _check_neighbour_list(item: Any, k: int, name: str, field: str) -> None:
    """One image's per-neighbour list: a list of ``k`` entries, or a precise error."""
    if not isinstance(item, list):
        raise OfficialFormatError(f'{name}: {field} is {type(item).__name__}, expected a list '
                                  '(one entry per neighbour)')
    if len(item) != k:
        raise OfficialFormatError(f'{name}: {field} has {len(item)} neighbours, expected {k}')


def _knn_rows(rows: Any, n: int, k: int, name: str, field: str) -> np.ndarray:
    if not isinstance(rows, list) or len(rows) != n:
        got = len(rows) if isinstance(rows, list) else type(rows).__name__
        raise OfficialFormatError(f'{name}: {field} has {got} entries, expected {n} (one per '
                                  'image)')
    try:
        a = np.array(rows)
    except ValueError:
        a = None
    if a is None or a.ndim != 2 or a.shape[1] != k or a.dtype.kind not in 'iu':
        if n == 0:
            return np.zeros((0, k), np.int32)
        for i, r in enumerate(rows):
            _check_neighbour_list(r, k, name, f'{field}[{i}]')
            for v in r:
                if not isinstance(v, int) or isinstance(v, bool):
                    raise OfficialFormatError(f'{name}: {field}[{i}] has {v!r}, expected int '
                                              'positions')
        raise OfficialFormatError(f'{name}: {field} is not an (N, {k}) table of ints')
    bad = np.flatnonzero(((a < 0) | (a >= n)).any(1))
    if bad.size:
        i = int(bad[0])
        raise OfficialFormatError(f'{name}: {field}[{i}] = {rows[i]} has positions outside '
                                  f'[0, {n}) (neighbours are 0-based positions in the image list)')
    return a.astype(np.int32)


def _meta(data: dict, name: str) -> tuple[dict, list, dict]:
    meta = data.get(META_KEY) or {}
    if not isinstance(meta, dict):
        raise OfficialFormatError(f'{name}: field "{META_KEY}" is not an object')
    return dict(meta.get('provenance') or {}), list(meta.get('skipped') or []), \
        dict(meta.get('params') or {})


def parse_official_dict(data: Any,
                        name: str = '<json>',
                        *,
                        kind: Optional[str] = None,
                        images: ImagesArg = None,
                        verbose: bool = False) -> StoreParts:
    """Validate an already-parsed official file (``name``: its path, for the messages) and
    turn it into the parts of an in-memory store."""
    found = detect_kind(data, name)
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
        if found != kind:
            raise OfficialFormatError(f'{name}: holds {found} data, expected {kind}')
    given = _resolve_images(images)
    prov, skipped, extra_params = _meta(data, name)
    prov.setdefault('converted_from', name)
    _progress = Progress(verbose)

    if found == 'selective_search':
        bbox = _field(data, 'bbox', name, '', list)
        n = len(bbox)
        names = ids = None
        if 'images' in data:  # written by orl_plugin with its image list
            names, ids = _image_list(data, name, n)
            if given is not None:
                _check_against(name, names, ids, given)
        elif given is not None:
            names, ids = given
            if len(names) != n:
                raise OfficialFormatError(f'{name}: has boxes for {n} images but the given image list has '
                                          f'{len(names)}; the selective-search file is aligned by position with it')
        rows = [_rows(b, 4, name, f'bbox[{i}]') for i, b in _progress(enumerate(bbox), n, 'bbox')]
        flat, off = concat_rows(rows, 4)
        return build_parts(
            'selective_search',
            image_ids=ids,
            file_names=names,
            num_images=n,
            boxes=flat,
            box_offsets=off,
            params=extra_params,
            provenance=prov,
            skipped=skipped,
            has_image_list=names is not None)

    info = _field(data, 'info', name, '', dict)
    k = _field(info, 'knn_image_num', name, 'info.', int)
    if found == 'correspondence':
        missing = [f for f in CORRESPONDENCE_INFO_FIELDS if f not in info]
        if missing:
            raise OfficialFormatError(f'{name}: field "info.{missing[0]}" is missing')
    pa = _field(data, 'pseudo_annotations', name, '', dict)
    fns, ids = _image_list(data, name, None)
    n = len(fns)
    if given is not None:
        _check_against(name, fns, ids, given)
    pids = _field(pa, 'image_id', name, 'pseudo_annotations.', list)
    if len(pids) != n:
        raise OfficialFormatError(f'{name}: pseudo_annotations.image_id has {len(pids)} entries, '
                                  f'expected {n} (one per image)')
    pid_arr = np.asarray(pids) if n else np.zeros(0, np.int64)
    if pid_arr.dtype.kind not in 'iu' or not np.array_equal(pid_arr, ids):
        i = next(i for i in range(n) if pids[i] != int(ids[i]) or not isinstance(pids[i], int))
        raise OfficialFormatError(f'{name}: pseudo_annotations.image_id[{i}] = {pids[i]!r} '
                                  f'differs from images.id[{i}] = {int(ids[i])}')
    knn = _knn_rows(
        _field(pa, 'knn_image_id', name, 'pseudo_annotations.'), n, k, name, 'pseudo_annotations.knn_image_id')
    params = dict(info)
    if found == 'knn':
        return build_parts(
            'knn', image_ids=ids, file_names=fns, knn=knn, params=params, provenance=prov, skipped=skipped)

    bbox = _field(pa, 'bbox', name, 'pseudo_annotations.', list)
    if len(bbox) != n:
        raise OfficialFormatError(f'{name}: pseudo_annotations.bbox has {len(bbox)} entries, '
                                  f'expected {n} (one per image)')
    rows = [_rows(b, 4, name, f'pseudo_annotations.bbox[{i}]') for i, b in _progress(enumerate(bbox), n, 'bbox')]
    flat_b, off_b = concat_rows(rows, 4)
    del rows
    kbp = _field(pa, 'knn_bbox_pair', name, 'pseudo_annotations.', list)
    if len(kbp) != n:
        raise OfficialFormatError(f'{name}: pseudo_annotations.knn_bbox_pair has {len(kbp)} '
                                  f'entries, expected {n} (one per image)')
    cells: list = []
    for i, per_img in _progress(enumerate(kbp), n, 'knn_bbox_pair'):
        field = f'pseudo_annotations.knn_bbox_pair[{i}]'
        _check_neighbour_list(per_img, k, name, field)
        # Usually every neighbour has the same pair count (int(0.1 * B)): one array call.
        try:
            a = np.array(per_img) if k else None
        except ValueError:
            a = None
        if a is not None and a.ndim == 3 and a.shape[2] == 8 and a.dtype.kind in 'iu':
            cells.extend(a)
        else:
            cells.extend(_rows(p, 8, name, f'{field}[{j}]') for j, p in enumerate(per_img))
    flat_p, off_p = concat_rows(cells, 8)
    del cells
    return build_parts(
        'correspondence',
        image_ids=ids,
        file_names=fns,
        boxes=flat_b,
        box_offsets=off_b,
        knn=knn,
        pairs=flat_p,
        pair_offsets=off_p,
        params=params,
        provenance=prov,
        skipped=skipped)


class Progress:
    """mmengine progress bar over an iterable, updated in chunks (cheap at COCO size)."""

    def __init__(self, enabled: bool, chunk: int = 2000) -> None:
        self.enabled = enabled
        self.chunk = chunk

    def __call__(self, it, total: int, what: str = ''):
        if not self.enabled or total == 0:
            yield from it
            return
        from mmengine.utils import ProgressBar
        if what:
            print(what, flush=True)
        bar = ProgressBar(total)
        done = 0
        for x in it:
            yield x
            done += 1
            if done % self.chunk == 0:
                bar.update(self.chunk)
        if done % self.chunk:
            bar.update(done % self.chunk)
        print(flush=True)
