"""``MiningStore``: the read side of ORL's mined data, from a native store or an official JSON.

Build one with :meth:`MiningStore.open` (a ``*.orlstore`` directory, memory-mapped; or an official
``.json`` file, parsed into memory) or :meth:`MiningStore.from_arrays`; write one with
:meth:`MiningStore.save` or the ``write_*_store`` functions (:mod:`.writers`).
"""
from __future__ import annotations

import os
import os.path as osp
import uuid
from typing import Any, Optional, Sequence

import numpy as np

from .format import (STORE_FORMAT, STORE_VERSION, PathLike, StoreFormatError, StoreParts, build_parts,
                     default_provenance, jsonable, read_store_dir, write_store_dir)
from .official_json import ImagesArg, parse_official_dict, parse_official_json


class MiningStore:
    """Read side of a mining store (native directory, memory-mapped; or official ORL JSON).

    Attributes:
        kind: ``'selective_search'``, ``'knn'`` or ``'correspondence'``.
        header: the header dict (format, version, kind, num_images, params, provenance, ...).
        num_images: number of images N (positions 0..N-1 are the indices used everywhere).
        image_ids: int64 (N,) image ids (COCO ids; -1 when the source had no image list).
        params: the official "info" fields (correspondence / knn), or mining parameters.
        skipped: list of ``{index, file_name, reason}`` for images the miner skipped.
        path: the store directory or JSON file it came from, absolute (None in memory).
        source: ``'store'``, ``'official_json'`` or ``'memory'``.
    """

    def __init__(self,
                 kind: str,
                 header: dict,
                 arrays: dict,
                 path: Optional[str] = None,
                 source: str = 'memory') -> None:
        self.kind = kind
        self.header = header
        self.path = path
        self.source = source
        self._arrays = arrays
        self.num_images = int(header['num_images'])
        self.image_ids = arrays['image_ids']
        self._file_names = arrays['file_names']
        self._box_data = arrays.get('boxes')
        self._box_off = arrays.get('box_offsets')
        self._knn = arrays.get('knn')
        self._pair_data = arrays.get('pairs')
        self._pair_off = arrays.get('pair_offsets')
        self.num_neighbours = int(self._knn.shape[1]) if self._knn is not None else 0
        self._name_index: Optional[dict] = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def open(cls,
             path: PathLike,
             *,
             kind: Optional[str] = None,
             images: ImagesArg = None,
             validate: bool = True,
             verbose: bool = False) -> 'MiningStore':
        """Open a native store directory, or an official ORL JSON file (path ends in .json).

        Args:
            path: ``*.orlstore`` directory or official ``*.json`` file.
            kind: expected kind; an error naming the file is raised when it holds another one.
            images: official JSON only: the image list (COCO ann JSON path(s), an image folder,
                or ``(file_names, image_ids)``) to attach to a selective-search file (which has
                none) or to check a KNN/correspondence file against.
            validate: native stores: check offsets are monotonic and neighbour indices in range
                (cheap: a few ms at COCO size); shapes, dtypes and end offsets are always checked.
            verbose: official JSON only: print progress while parsing (COCO files take minutes).
        """
        path = osp.abspath(os.fspath(path))
        if path.endswith('.json'):
            parts = parse_official_json(path, kind=kind, images=images, verbose=verbose)
            return cls(*parts, path=path, source='official_json')
        if images is not None:
            raise ValueError(f'{path}: images= only applies to official JSON files; a store '
                             'holds its own image list')
        store = cls(*read_store_dir(path, validate=validate), path=path, source='store')
        if kind is not None and store.kind != kind:
            raise StoreFormatError(f'{path}: holds a {store.kind!r} store, expected {kind!r}')
        return store

    @classmethod
    def from_official_dict(cls,
                           data: Any,
                           name: str = '<json>',
                           *,
                           kind: Optional[str] = None,
                           images: ImagesArg = None) -> 'MiningStore':
        """An in-memory store from an already-parsed official JSON object (``name`` for errors)."""
        return cls(*parse_official_dict(data, name, kind=kind, images=images), source='official_json')

    @classmethod
    def from_arrays(cls,
                    kind: str,
                    *,
                    image_ids: Optional[Any] = None,
                    file_names: Optional[Any] = None,
                    num_images: Optional[int] = None,
                    boxes: Optional[np.ndarray] = None,
                    box_offsets: Optional[np.ndarray] = None,
                    knn: Optional[np.ndarray] = None,
                    pairs: Optional[np.ndarray] = None,
                    pair_offsets: Optional[np.ndarray] = None,
                    params: Optional[dict] = None,
                    provenance: Optional[dict] = None,
                    skipped: Optional[Sequence[dict]] = None,
                    has_image_list: Optional[bool] = None) -> 'MiningStore':
        """Build an in-memory store from CSR arrays (validated, dtypes made compact).

        ``boxes``/``pairs`` are (total, 4)/(total, 8) with int64 ``*_offsets`` (N + 1 and
        N * k + 1 entries). Without an image list, ids are -1 and names empty.
        """
        parts: StoreParts = build_parts(
            kind,
            image_ids=image_ids,
            file_names=file_names,
            num_images=num_images,
            boxes=boxes,
            box_offsets=box_offsets,
            knn=knn,
            pairs=pairs,
            pair_offsets=pair_offsets,
            params=params,
            provenance=provenance,
            skipped=skipped,
            has_image_list=has_image_list)
        return cls(*parts)

    def save(self, path: PathLike, *, provenance: Optional[dict] = None) -> str:
        """Write this store atomically as a native store directory; returns its path.

        ``provenance`` is merged over this store's own (and the defaults when it has none).
        """
        prov = dict(self.provenance)
        if not prov or provenance is not None:
            prov = default_provenance({**prov, **(provenance or {})})
        header = dict(
            format=STORE_FORMAT,
            version=STORE_VERSION,
            kind=self.kind,
            num_images=self.num_images,
            has_image_list=self.has_image_list,
            params=jsonable(self.params),
            provenance=jsonable(prov),
            skipped=self.skipped,
            uid=uuid.uuid4().hex,
            arrays={name: dict(dtype=arr.dtype.str, shape=list(arr.shape)) for name, arr in self._arrays.items()},
            counts=self._counts())
        return write_store_dir(path, header, self._arrays)

    def _counts(self) -> dict:
        c = dict(images=self.num_images)
        if self._box_data is not None:
            c['boxes'] = int(self._box_data.shape[0])
        if self._knn is not None:
            c['neighbours'] = self.num_neighbours
        if self._pair_data is not None:
            c['pairs'] = int(self._pair_data.shape[0])
        return c

    # ---------------------------------------------------------------- pickling
    def __getstate__(self) -> dict:
        # Store-backed: ship the path only, the receiving process maps the same files.
        if self.source == 'store' and self.path:
            return dict(_reopen=self.path, _uid=self.header.get('uid'))
        return self.__dict__.copy()

    def __setstate__(self, state: dict) -> None:
        if '_reopen' in state:
            path = state['_reopen']
            parts = read_store_dir(path, validate=False)
            if state['_uid'] is not None and parts.header.get('uid') != state['_uid']:
                raise StoreFormatError(f'{path}: the store was replaced after this process '
                                       'opened it; reopen it')
            self.__init__(*parts, path=path, source='store')
        else:
            self.__dict__.update(state)

    # ---------------------------------------------------------------- metadata
    @property
    def params(self) -> dict:
        return self.header.get('params', {})

    @property
    def provenance(self) -> dict:
        return self.header.get('provenance', {})

    @property
    def skipped(self) -> list:
        return self.header.get('skipped', [])

    @property
    def has_image_list(self) -> bool:
        """False for selective-search data converted without ``--images`` (ids -1, no names)."""
        return bool(self.header.get('has_image_list', True))

    @property
    def box_dtype(self) -> Optional[np.dtype]:
        return None if self._box_data is None else self._box_data.dtype

    @property
    def pair_dtype(self) -> Optional[np.dtype]:
        return None if self._pair_data is None else self._pair_data.dtype

    @property
    def total_boxes(self) -> int:
        return 0 if self._box_data is None else int(self._box_data.shape[0])

    @property
    def total_pairs(self) -> int:
        return 0 if self._pair_data is None else int(self._pair_data.shape[0])

    def array(self, name: str) -> np.ndarray:
        """Raw (read-only when memory-mapped) array: image_ids, file_names, boxes, ..."""
        if name not in self._arrays:
            raise KeyError(f'a {self.kind} store has no array {name!r}; it has '
                           f'{sorted(self._arrays)}')
        return self._arrays[name]

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self._arrays.values()))

    def __len__(self) -> int:
        return self.num_images

    def __repr__(self) -> str:
        c = ', '.join(f'{k}={v}' for k, v in self._counts().items())
        return f'MiningStore(kind={self.kind!r}, {c}, path={self.path!r})'

    # ---------------------------------------------------------------- per-image access
    def _check_index(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.num_images:
            raise IndexError(f'image index {i} out of range [0, {self.num_images})')
        return i

    def _need(self, arr: Optional[np.ndarray], what: str) -> np.ndarray:
        if arr is None:
            raise AttributeError(f'a {self.kind} store has no {what}')
        return arr

    def file_name(self, i: int) -> str:
        """File name of image ``i`` as in the source annotation file ('' when unknown)."""
        return bytes(self._file_names[self._check_index(i)]).decode('utf-8')

    def file_names(self) -> list:
        """All file names (builds N Python strings: not for data-loader workers)."""
        return [bytes(b).decode('utf-8') for b in np.asarray(self._file_names)]

    def index_of(self, file_name: str) -> int:
        """Position of an image by file name (builds a dict on first use)."""
        if self._name_index is None:
            self._name_index = {n: i for i, n in enumerate(self.file_names())}
        return self._name_index[file_name]

    def num_boxes(self, i: int) -> int:
        off = self._need(self._box_off, 'boxes')
        i = self._check_index(i)
        return int(off[i + 1] - off[i])

    def boxes(self, i: int) -> np.ndarray:
        """(B, 4) int32 xywh: raw proposals (selective search) or kept boxes (correspondence)."""
        off = self._need(self._box_off, 'boxes')
        i = self._check_index(i)
        return np.array(self._box_data[off[i]:off[i + 1]], dtype=np.int32)

    def knn(self, i: int) -> np.ndarray:
        """(k,) int64 0-based positions of image ``i``'s neighbours."""
        kn = self._need(self._knn, 'neighbours (knn)')
        return np.array(kn[self._check_index(i)], dtype=np.int64)

    def _cell(self, i: int, j: int) -> int:
        self._need(self._pair_off, 'pairs')
        i = self._check_index(i)
        j = int(j)
        if not 0 <= j < self.num_neighbours:
            raise IndexError(f'neighbour slot {j} out of range [0, {self.num_neighbours})')
        return i * self.num_neighbours + j

    def num_pairs(self, i: int, j: int) -> int:
        c = self._cell(i, j)
        return int(self._pair_off[c + 1] - self._pair_off[c])

    def pairs(self, i: int, j: int) -> np.ndarray:
        """(P, 8) int32 ``[qx, qy, qw, qh, nx, ny, nw, nh]`` for neighbour slot ``j`` of ``i``."""
        c = self._cell(i, j)
        return np.array(self._pair_data[self._pair_off[c]:self._pair_off[c + 1]], dtype=np.int32)

    def image_pairs(self, i: int) -> list:
        """All k pair arrays of image ``i`` (one slice read)."""
        c0 = self._cell(i, 0) if self.num_neighbours else None
        if c0 is None:
            return []
        offs = np.asarray(self._pair_off[c0:c0 + self.num_neighbours + 1])
        block = np.array(self._pair_data[offs[0]:offs[-1]], dtype=np.int32)
        return np.split(block, offs[1:-1] - offs[0])
