"""Native, compact, memory-mapped store for ORL's mined data (stage-2 outputs).

A store is a directory (by convention ``*.orlstore``)::

    header.json        format name + version, kind, num_images, params, provenance, skipped images
    image_ids.npy      int64 (N,)
    file_names.npy     fixed-width bytes 'S' (N,), UTF-8
    boxes.npy          int16 or int32 (total_boxes, 4) xywh       [selective_search, correspondence]
    box_offsets.npy    int64 (N + 1,) CSR offsets into boxes      [selective_search, correspondence]
    knn.npy            int32 (N, k) 0-based positions             [knn, correspondence]
    pairs.npy          int16 or int32 (total_pairs, 8)            [correspondence]
    pair_offsets.npy   int64 (N * k + 1,) CSR offsets over the (image, neighbour slot) cells

Arrays are opened with ``np.load(mmap_mode='r')``: opening parses nothing but ``header.json``
and the ``.npy`` headers, and data-loader workers share the pages through the page cache instead
of each holding (and copy-on-write touching) millions of Python objects, which is what the
official JSON files cost. The official ORL JSON files open through the same API
(:meth:`MiningStore.open` dispatches on ``.json``); see :mod:`orl_plugin.datasets.official_json`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
import uuid
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

__all__ = [
    'STORE_FORMAT', 'STORE_VERSION', 'KINDS', 'StoreFormatError', 'MiningStore',
    'write_selective_search_store', 'write_knn_store', 'write_correspondence_store',
    'is_store_dir', 'default_provenance'
]

STORE_FORMAT = 'orl-mining-store'
STORE_VERSION = 1
KINDS = ('selective_search', 'knn', 'correspondence')
HEADER_FILE = 'header.json'

# Which arrays each kind holds, with the dtypes accepted on open.
_BOX_DTYPES = (np.dtype(np.int16), np.dtype(np.int32))
_ARRAYS = {
    'selective_search': ('image_ids', 'file_names', 'boxes', 'box_offsets'),
    'knn': ('image_ids', 'file_names', 'knn'),
    'correspondence': ('image_ids', 'file_names', 'boxes', 'box_offsets', 'knn', 'pairs',
                       'pair_offsets'),
}

PathLike = Union[str, os.PathLike]


class StoreFormatError(ValueError):
    """A store (or the data given to a writer) is malformed; the message names file and field."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _smallest_int_dtype(arr: np.ndarray, what: str) -> np.dtype:
    """int16 when every value fits (COCO coordinates do), else int32."""
    if arr.size == 0:
        return np.dtype(np.int16)
    lo, hi = int(arr.min()), int(arr.max())
    i16, i32 = np.iinfo(np.int16), np.iinfo(np.int32)
    if i16.min <= lo and hi <= i16.max:
        return np.dtype(np.int16)
    if i32.min <= lo and hi <= i32.max:
        return np.dtype(np.int32)
    raise StoreFormatError(f'{what}: values in [{lo}, {hi}] do not fit in int32')


def _as_int_rows(arr: Any, width: int, what: str) -> np.ndarray:
    """Return ``arr`` as an integer (n, width) array; integral floats are accepted."""
    a = np.asarray(arr)
    if a.size == 0:
        return np.zeros((0, width), dtype=np.int64)
    if a.ndim != 2 or a.shape[1] != width:
        raise StoreFormatError(f'{what} has shape {tuple(a.shape)}, expected (n, {width})')
    if a.dtype.kind == 'f':
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
            raise StoreFormatError(f'{what} has non-integer values; ORL boxes are integer pixels')
        a = a.astype(np.int64)
    elif a.dtype.kind not in 'iu':
        raise StoreFormatError(f'{what} has dtype {a.dtype}, expected integers')
    return a


def _csr(chunks: Sequence[Any], width: int, name=lambda i: f'[{i}]'
         ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-item (n_i, width) arrays into (flat, offsets); ``name(i)`` for errors."""
    rows = [_as_int_rows(c, width, name(i)) for i, c in enumerate(chunks)]
    counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = np.concatenate(rows) if rows else np.zeros((0, width), np.int64)
    return flat, offsets


def encode_file_names(file_names: Optional[Iterable[str]], n: int, what: str = 'file_names'
                      ) -> np.ndarray:
    """Encode names as a fixed-width UTF-8 bytes array (one buffer, no Python object per name)."""
    if file_names is None:
        return np.zeros(n, dtype='S1')
    if isinstance(file_names, np.ndarray) and file_names.dtype.kind == 'S':
        enc = np.asarray(file_names)
    else:
        names = list(file_names)
        for i, s in enumerate(names):
            if not isinstance(s, str):
                raise StoreFormatError(f'{what}[{i}] is {type(s).__name__}, expected str')
        enc = np.array([s.encode('utf-8') for s in names], dtype=bytes)
        if enc.dtype.itemsize == 0 or enc.size == 0:
            enc = enc.astype('S1')
    if enc.shape != (n, ):
        raise StoreFormatError(f'{what} has {enc.shape[0] if enc.ndim else 0} entries, '
                               f'expected {n} (one per image)')
    return enc


def default_provenance(extra: Optional[dict] = None) -> dict:
    """Provenance defaults (tool, time, versions) updated with what the caller passes."""
    try:
        import orl_plugin
        version = getattr(orl_plugin, '__version__', 'unknown')
    except Exception:  # the store must stay usable even if the package fails to import
        version = 'unknown'
    prov = dict(
        tool=osp.basename(sys.argv[0]) if sys.argv and sys.argv[0] else 'python',
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        orl_plugin_version=version,
        numpy_version=np.__version__)
    if extra:
        prov.update(extra)
    return prov


def _check_skipped(skipped: Optional[Sequence[dict]]) -> list:
    out = []
    for i, s in enumerate(skipped or []):
        if not isinstance(s, dict) or 'index' not in s:
            raise StoreFormatError(f'skipped[{i}] must be a dict with index, file_name, reason')
        out.append(dict(index=int(s['index']), file_name=str(s.get('file_name', '')),
                        reason=str(s.get('reason', ''))))
    return out


def _jsonable(obj: Any) -> Any:
    """Turn numpy scalars/arrays inside params/provenance into JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def is_store_dir(path: PathLike) -> bool:
    """Whether ``path`` is a directory holding an orl_plugin store header."""
    hp = osp.join(path, HEADER_FILE)
    if not osp.isfile(hp):
        return False
    try:
        with open(hp, encoding='utf-8') as f:
            return json.load(f).get('format') == STORE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _rename_exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux renameat2); False when unsupported here."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _install_dir(tmp: str, target: str) -> None:
    """Move the finished ``tmp`` directory to ``target``, replacing an old store safely.

    Readers of the old store keep working: their mmaps hold the unlinked files.
    """
    if not osp.lexists(target):
        os.rename(tmp, target)
        return
    if not (osp.isdir(target) and not osp.islink(target) and is_store_dir(target)):
        raise FileExistsError(f'{target} exists and is not an orl_plugin store; '
                              'refusing to replace it')
    if _rename_exchange(tmp, target):
        # tmp now holds the old store
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = tmp + '.old'
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _save_npy(path: str, arr: np.ndarray) -> None:
    with open(path, 'wb') as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _write_store_dir(path: PathLike, header: dict, arrays: dict) -> str:
    """Write ``header.json`` + arrays to a temp dir beside ``path``, fsync, rename into place."""
    path = osp.abspath(os.fspath(path)).rstrip(os.sep)
    parent = osp.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(path)}.tmp-', dir=parent)
    try:
        for name, arr in arrays.items():
            _save_npy(osp.join(tmp, name + '.npy'), arr)
        # header last: a directory without a valid header is never mistaken for a store
        with open(osp.join(tmp, HEADER_FILE), 'w', encoding='utf-8') as f:
            json.dump(header, f, indent=1)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _fsync_dir(tmp)
        _install_dir(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------
class MiningStore:
    """Read side of a mining store (native directory, memory-mapped; or official ORL JSON).

    Build one with :meth:`open` (files) or :meth:`from_arrays` (memory); write one with
    :meth:`save` or the ``write_*_store`` functions.

    Attributes:
        kind: ``'selective_search'``, ``'knn'`` or ``'correspondence'``.
        header: the header dict (format, version, kind, num_images, params, provenance, ...).
        num_images: number of images N (positions 0..N-1 are the indices used everywhere).
        image_ids: int64 (N,) image ids (COCO ids; -1 when the source had no image list).
        params: the official "info" fields (correspondence / knn), or mining parameters.
        skipped: list of ``{index, file_name, reason}`` for images the miner skipped.
        path: the store directory or JSON file it came from (None for in-memory stores).
    """

    def __init__(self, kind: str, header: dict, arrays: dict, path: Optional[str] = None,
                 source: str = 'memory') -> None:
        self.kind = kind
        self.header = header
        self.path = path
        self.source = source  # 'store' | 'official_json' | 'memory'
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
    def open(cls, path: PathLike, *, kind: Optional[str] = None, images: Any = None,
             validate: bool = True) -> 'MiningStore':
        """Open a native store directory, or an official ORL JSON file (path ends in .json).

        Args:
            path: ``*.orlstore`` directory or official ``*.json`` file.
            kind: expected kind; an error is raised when the file holds another one.
            images: official JSON only: the image list (COCO ann JSON path(s), an image folder,
                or ``(file_names, image_ids)``) to attach to a selective-search file (which has
                none) or to check a KNN/correspondence file against.
            validate: check offsets are monotonic and neighbour indices in range (cheap: a few
                ms at COCO size); shapes, dtypes and end offsets are always checked.
        """
        path = os.fspath(path)
        if path.endswith('.json'):
            from .official_json import read_official_json  # lazy: it imports this module
            return read_official_json(path, kind=kind, images=images)
        if images is not None:
            raise ValueError('images= only applies to official JSON files; a store holds its '
                             'own image list')
        store = cls._open_dir(path, validate=validate)
        if kind is not None and store.kind != kind:
            raise StoreFormatError(f'{path}: holds a {store.kind!r} store, expected {kind!r}')
        return store

    @classmethod
    def _open_dir(cls, path: str, validate: bool = True) -> 'MiningStore':
        hp = osp.join(path, HEADER_FILE)
        if not osp.isdir(path):
            raise FileNotFoundError(f'no mining store at {path} (expected a directory with '
                                    f'{HEADER_FILE}, or an official .json file)')
        try:
            with open(hp, encoding='utf-8') as f:
                header = json.load(f)
        except FileNotFoundError:
            raise StoreFormatError(f'{hp}: missing; {path} is not a complete store') from None
        except ValueError as e:
            raise StoreFormatError(f'{hp}: not valid JSON ({e})') from None
        if not isinstance(header, dict) or header.get('format') != STORE_FORMAT:
            raise StoreFormatError(f'{hp}: field "format" is {header.get("format")!r}, '
                                   f'expected {STORE_FORMAT!r}' if isinstance(header, dict)
                                   else f'{hp}: not a JSON object')
        version = header.get('version')
        if version != STORE_VERSION:
            raise StoreFormatError(
                f'{hp}: field "version" is {version!r}; this orl_plugin reads version '
                f'{STORE_VERSION}' + (' (written by a newer orl_plugin?)'
                                      if isinstance(version, int) and version > STORE_VERSION
                                      else ''))
        kind = header.get('kind')
        if kind not in KINDS:
            raise StoreFormatError(f'{hp}: field "kind" is {kind!r}, expected one of {KINDS}')
        n = header.get('num_images')
        if not isinstance(n, int) or n < 0:
            raise StoreFormatError(f'{hp}: field "num_images" is {n!r}, expected an int >= 0')
        arrays = {}
        for name in _ARRAYS[kind]:
            fp = osp.join(path, name + '.npy')
            try:
                arrays[name] = np.load(fp, mmap_mode='r', allow_pickle=False)
            except FileNotFoundError:
                raise StoreFormatError(f'{fp}: missing (a {kind} store needs '
                                       f'{", ".join(_ARRAYS[kind])})') from None
            except ValueError as e:
                raise StoreFormatError(f'{fp}: not a readable .npy array ({e})') from None
        _check_arrays(kind, n, arrays, lambda name: osp.join(path, name + '.npy'),
                      deep=validate)
        return cls(kind, header, arrays, path=osp.abspath(path), source='store')

    @classmethod
    def from_arrays(cls, kind: str, *, image_ids: Optional[Any] = None,
                    file_names: Optional[Any] = None, num_images: Optional[int] = None,
                    boxes: Optional[np.ndarray] = None, box_offsets: Optional[np.ndarray] = None,
                    knn: Optional[np.ndarray] = None, pairs: Optional[np.ndarray] = None,
                    pair_offsets: Optional[np.ndarray] = None, params: Optional[dict] = None,
                    provenance: Optional[dict] = None, skipped: Optional[Sequence[dict]] = None,
                    has_image_list: Optional[bool] = None, source: str = 'memory',
                    path: Optional[str] = None) -> 'MiningStore':
        """Build an in-memory store from CSR arrays (validated, dtypes made compact).

        ``boxes``/``pairs`` are (total, 4)/(total, 8) with int64 ``*_offsets`` (N + 1 and
        N * k + 1 entries). Without an image list, ids are -1 and names empty.
        """
        if kind not in KINDS:
            raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
        if num_images is None:
            if image_ids is not None:
                num_images = len(image_ids)
            elif file_names is not None:
                num_images = len(file_names)
            elif box_offsets is not None:
                num_images = len(box_offsets) - 1
            elif knn is not None:
                num_images = len(knn)
            else:
                raise ValueError('cannot tell the number of images')
        n = int(num_images)
        if has_image_list is None:
            has_image_list = image_ids is not None or file_names is not None
        if image_ids is None:
            ids = np.full(n, -1, dtype=np.int64)
        else:
            ids = np.asarray(image_ids)
            if ids.dtype.kind not in 'iu' and ids.size:
                raise StoreFormatError(f'image_ids has dtype {ids.dtype}, expected integers')
            ids = ids.astype(np.int64)
        arrays = dict(image_ids=ids, file_names=encode_file_names(file_names, n))
        if kind in ('selective_search', 'correspondence'):
            if boxes is None or box_offsets is None:
                raise ValueError(f'a {kind} store needs boxes and box_offsets')
            b = _as_int_rows(boxes, 4, 'boxes')
            arrays['boxes'] = b.astype(_smallest_int_dtype(b, 'boxes'), copy=False)
            arrays['box_offsets'] = np.asarray(box_offsets, dtype=np.int64)
        if kind in ('knn', 'correspondence'):
            if knn is None:
                raise ValueError(f'a {kind} store needs knn')
            kn = np.asarray(knn)
            if kn.ndim != 2 or kn.shape[0] != n:
                raise StoreFormatError(f'knn has shape {kn.shape}, expected ({n}, k)')
            if kn.dtype.kind not in 'iu' and kn.size:
                raise StoreFormatError(f'knn has dtype {kn.dtype}, expected integers')
            if kn.size and (kn.min() < np.iinfo(np.int32).min or kn.max() > np.iinfo(np.int32).max):
                raise StoreFormatError('knn: positions do not fit in int32')
            arrays['knn'] = kn.astype(np.int32)
        if kind == 'correspondence':
            if pairs is None or pair_offsets is None:
                raise ValueError('a correspondence store needs pairs and pair_offsets')
            p = _as_int_rows(pairs, 8, 'pairs')
            arrays['pairs'] = p.astype(_smallest_int_dtype(p, 'pairs'), copy=False)
            arrays['pair_offsets'] = np.asarray(pair_offsets, dtype=np.int64)
        _check_arrays(kind, n, arrays, lambda name: name, deep=True)
        header = dict(format=STORE_FORMAT, version=STORE_VERSION, kind=kind, num_images=n,
                      has_image_list=bool(has_image_list), params=_jsonable(dict(params or {})),
                      provenance=_jsonable(dict(provenance or {})),
                      skipped=_check_skipped(skipped))
        return cls(kind, header, arrays, path=path, source=source)

    def save(self, path: PathLike, *, provenance: Optional[dict] = None) -> str:
        """Write this store atomically as a native store directory; returns its path.

        ``provenance`` is merged over this store's own (and the defaults when it has none).
        """
        prov = dict(self.provenance)
        if not prov or provenance is not None:
            prov = default_provenance({**prov, **(provenance or {})})
        header = dict(
            format=STORE_FORMAT, version=STORE_VERSION, kind=self.kind,
            num_images=self.num_images, has_image_list=self.has_image_list,
            params=_jsonable(self.params), provenance=_jsonable(prov), skipped=self.skipped,
            uid=uuid.uuid4().hex,
            arrays={name: dict(dtype=arr.dtype.str, shape=list(arr.shape))
                    for name, arr in self._arrays.items()},
            counts=self._counts())
        return _write_store_dir(path, header, self._arrays)

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
            other = MiningStore._open_dir(state['_reopen'], validate=False)
            if state['_uid'] is not None and other.header.get('uid') != state['_uid']:
                raise StoreFormatError(f'{state["_reopen"]}: the store was replaced after this '
                                       'process opened it; reopen it')
            self.__dict__.update(other.__dict__)
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


def _check_arrays(kind: str, n: int, arrays: dict, where, deep: bool = True) -> None:
    """Shapes, dtypes and CSR offsets consistent; errors name the file and field."""

    def fail(name: str, msg: str) -> None:
        raise StoreFormatError(f'{where(name)}: {msg}')

    ids = arrays['image_ids']
    if ids.shape != (n, ) or ids.dtype != np.int64:
        fail('image_ids', f'shape {ids.shape} dtype {ids.dtype}, expected ({n},) int64')
    fn = arrays['file_names']
    if fn.shape != (n, ) or fn.dtype.kind != 'S':
        fail('file_names', f'shape {fn.shape} dtype {fn.dtype}, expected ({n},) bytes (S)')

    def check_offsets(data_name: str, off_name: str, cells: int, width: int) -> None:
        data, off = arrays[data_name], arrays[off_name]
        if data.ndim != 2 or data.shape[1] != width or data.dtype not in _BOX_DTYPES:
            fail(data_name, f'shape {data.shape} dtype {data.dtype}, expected (total, {width}) '
                 'int16/int32')
        if off.shape != (cells + 1, ) or off.dtype != np.int64:
            fail(off_name, f'shape {off.shape} dtype {off.dtype}, expected ({cells + 1},) int64')
        if off[0] != 0 or off[-1] != data.shape[0]:
            fail(off_name, f'runs from {int(off[0])} to {int(off[-1])}, expected 0 to '
                 f'{data.shape[0]} (rows of {data_name}.npy)')
        if deep and cells:
            bad = np.flatnonzero(np.diff(off) < 0)
            if bad.size:
                fail(off_name, f'decreases at entry {int(bad[0])} '
                     f'({int(off[bad[0]])} -> {int(off[bad[0] + 1])})')

    if kind in ('selective_search', 'correspondence'):
        check_offsets('boxes', 'box_offsets', n, 4)
    k = 0
    if kind in ('knn', 'correspondence'):
        kn = arrays['knn']
        if kn.ndim != 2 or kn.shape[0] != n or kn.dtype != np.int32:
            fail('knn', f'shape {kn.shape} dtype {kn.dtype}, expected ({n}, k) int32')
        k = kn.shape[1]
        if deep and kn.size:
            lo, hi = int(kn.min()), int(kn.max())
            if lo < 0 or hi >= n:
                r = int(np.flatnonzero(((np.asarray(kn) < 0) | (np.asarray(kn) >= n)).any(1))[0])
                fail('knn', f'row {r} has neighbour positions {np.asarray(kn[r]).tolist()} '
                     f'outside [0, {n})')
    if kind == 'correspondence':
        check_offsets('pairs', 'pair_offsets', n * k, 8)


# --------------------------------------------------------------------------------------------
# writers (the names the mining evaluators code against)
# --------------------------------------------------------------------------------------------
def _prov(provenance: Optional[dict]) -> dict:
    return default_provenance(provenance)


def write_selective_search_store(path: PathLike, boxes: Sequence[np.ndarray], *,
                                 file_names: Optional[Sequence[str]] = None,
                                 image_ids: Optional[Sequence[int]] = None,
                                 params: Optional[dict] = None,
                                 provenance: Optional[dict] = None,
                                 skipped: Optional[Sequence[dict]] = None) -> str:
    """Write raw selective-search proposals, ``boxes[i]`` (B_i, 4) xywh, as a store."""
    flat, off = _csr(boxes, 4, lambda i: f'boxes[{i}]')
    store = MiningStore.from_arrays(
        'selective_search', image_ids=image_ids, file_names=file_names, num_images=len(boxes),
        boxes=flat, box_offsets=off, params=params, provenance=_prov(provenance),
        skipped=skipped)
    return store.save(path)


def write_knn_store(path: PathLike, knn: np.ndarray, *,
                    file_names: Optional[Sequence[str]] = None,
                    image_ids: Optional[Sequence[int]] = None, params: Optional[dict] = None,
                    provenance: Optional[dict] = None,
                    skipped: Optional[Sequence[dict]] = None) -> str:
    """Write (N, k) neighbour positions as a store; ``params`` default to the official info."""
    knn = np.asarray(knn)
    p = dict(knn_image_num=int(knn.shape[1]) if knn.ndim == 2 else 0)
    p.update(params or {})
    store = MiningStore.from_arrays(
        'knn', image_ids=image_ids, file_names=file_names, num_images=len(knn), knn=knn,
        params=p, provenance=_prov(provenance), skipped=skipped)
    return store.save(path)


def write_correspondence_store(path: PathLike, boxes: Sequence[np.ndarray], knn: np.ndarray,
                               pairs: Sequence[Sequence[np.ndarray]], *,
                               file_names: Optional[Sequence[str]] = None,
                               image_ids: Optional[Sequence[int]] = None,
                               params: Optional[dict] = None, provenance: Optional[dict] = None,
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
        'correspondence', image_ids=image_ids, file_names=file_names, num_images=n,
        boxes=flat_b, box_offsets=off_b, knn=knn, pairs=flat_p, pair_offsets=off_p, params=p,
        provenance=_prov(provenance), skipped=skipped)
    return store.save(path)
