"""The native store format: layout, validation, and reading/writing one store directory.

A store is a directory (by convention ``*.orlstore``; ``MiningStore`` is the object built from it)::

    header.json        format name + version, kind, num_images, params, provenance, skipped images
    image_ids.npy      int64 (N,)
    file_names.npy     fixed-width bytes 'S' (N,), UTF-8
    boxes.npy          int16 or int32 (total_boxes, 4) xywh       [selective_search, correspondence]
    box_offsets.npy    int64 (N + 1,) CSR offsets into boxes      [selective_search, correspondence]
    knn.npy            int32 (N, k) 0-based positions             [knn, correspondence]
    pairs.npy          int16 or int32 (total_pairs, 8)            [correspondence]
    pair_offsets.npy   int64 (N * k + 1,) CSR offsets over the (image, neighbour slot) cells
"""
from __future__ import annotations

import datetime
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np

from orl_plugin.utils.atomic import fsync_dir, install_dir

STORE_FORMAT = 'orl-mining-store'
STORE_VERSION = 1
KINDS = ('selective_search', 'knn', 'correspondence')
HEADER_FILE = 'header.json'

# Which arrays each kind holds, with the dtypes accepted on open.
BOX_DTYPES = (np.dtype(np.int16), np.dtype(np.int32))
ARRAYS = {
    'selective_search': ('image_ids', 'file_names', 'boxes', 'box_offsets'),
    'knn': ('image_ids', 'file_names', 'knn'),
    'correspondence': ('image_ids', 'file_names', 'boxes', 'box_offsets', 'knn', 'pairs', 'pair_offsets'),
}

PathLike = Union[str, os.PathLike]


class StoreFormatError(ValueError):
    """A store (or the data given to a writer) is malformed; the message names file and field."""


class OfficialFormatError(StoreFormatError):
    """A malformed official ORL JSON file (or COCO image list); the message starts with the
    file's full path and names the field."""


class StoreParts(NamedTuple):
    """What a store is made of: its kind, header dict and arrays (memory-mapped or in memory)."""

    kind: str
    header: dict
    arrays: dict


# --------------------------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------------------------
def smallest_int_dtype(arr: np.ndarray, what: str) -> np.dtype:
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


def as_int_rows(arr: Any, width: int, what: str) -> np.ndarray:
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


def concat_rows(rows: Sequence[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-item (n_i, width) integer arrays into CSR ``(flat, offsets)``."""
    counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    nonempty = [r for r in rows if len(r)]
    flat = np.concatenate(nonempty) if nonempty else np.zeros((0, width), np.int64)
    return flat, offsets


def encode_file_names(file_names: Optional[Iterable[str]], n: int, what: str = 'file_names') -> np.ndarray:
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
    # The parent package is imported before this module (it defines __version__ first).
    version = getattr(sys.modules.get(__name__.split('.')[0]), '__version__', 'unknown')
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
        out.append(dict(index=int(s['index']), file_name=str(s.get('file_name', '')), reason=str(s.get('reason', ''))))
    return out


def jsonable(obj: Any) -> Any:
    """Turn numpy scalars/arrays inside params/provenance into JSON types."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


# --------------------------------------------------------------------------------------------
# validation and building
# --------------------------------------------------------------------------------------------
def check_arrays(kind: str, n: int, arrays: dict, where: Callable[[str], str], deep: bool = True) -> None:
    """Shapes, dtypes and CSR offsets consistent; ``where(array name)`` starts each error."""

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
        if data.ndim != 2 or data.shape[1] != width or data.dtype not in BOX_DTYPES:
            fail(data_name, f'shape {data.shape} dtype {data.dtype}, expected (total, {width}) '
                 'int16/int32')
        if off.shape != (cells + 1, ) or off.dtype != np.int64:
            fail(off_name, f'shape {off.shape} dtype {off.dtype}, expected ({cells + 1},) int64')
        if off[0] != 0 or off[-1] != data.shape[0]:
            fail(
                off_name, f'runs from {int(off[0])} to {int(off[-1])}, expected 0 to '
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


def build_parts(kind: str,
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
                has_image_list: Optional[bool] = None) -> StoreParts:
    """Validate CSR arrays and make their dtypes compact (see ``MiningStore.from_arrays``)."""
    if kind not in KINDS:
        raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
    if num_images is None:
        for src, count in ((image_ids, len), (file_names, len), (box_offsets, lambda a: len(a) - 1), (knn, len)):
            if src is not None:
                num_images = count(src)
                break
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
        b = as_int_rows(boxes, 4, 'boxes')
        arrays['boxes'] = b.astype(smallest_int_dtype(b, 'boxes'), copy=False)
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
        p = as_int_rows(pairs, 8, 'pairs')
        arrays['pairs'] = p.astype(smallest_int_dtype(p, 'pairs'), copy=False)
        arrays['pair_offsets'] = np.asarray(pair_offsets, dtype=np.int64)
    check_arrays(kind, n, arrays, lambda name: name, deep=True)
    header = dict(
        format=STORE_FORMAT,
        version=STORE_VERSION,
        kind=kind,
        num_images=n,
        has_image_list=bool(has_image_list),
        params=jsonable(dict(params or {})),
        provenance=jsonable(dict(provenance or {})),
        skipped=_check_skipped(skipped))
    return StoreParts(kind, header, arrays)


# --------------------------------------------------------------------------------------------
# one store directory on disk
# --------------------------------------------------------------------------------------------
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


def read_store_dir(path: PathLike, validate: bool = True) -> StoreParts:
    """Read ``header.json`` and memory-map the arrays of a store directory, checked.

    Opening parses nothing but ``header.json`` and the ``.npy`` headers (``np.load(mmap_mode='r')``), and
    data-loader workers share the pages through the page cache instead of each holding (and copy-on-write
    touching) millions of Python objects, which is what the official JSON files cost.

    Shapes, dtypes and end offsets are always checked; with ``validate`` also that offsets never
    decrease and neighbour positions are in range (a few ms at COCO size). Errors name the file
    (full path) and the field.
    """
    path = osp.abspath(os.fspath(path))
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
    if not isinstance(header, dict):
        raise StoreFormatError(f'{hp}: not a JSON object')
    if header.get('format') != STORE_FORMAT:
        raise StoreFormatError(f'{hp}: field "format" is {header.get("format")!r}, '
                               f'expected {STORE_FORMAT!r}')
    version = header.get('version')
    if version != STORE_VERSION:
        newer = isinstance(version, int) and version > STORE_VERSION
        raise StoreFormatError(f'{hp}: field "version" is {version!r}; this orl_plugin reads version '
                               f'{STORE_VERSION}' + (' (written by a newer orl_plugin?)' if newer else ''))
    kind = header.get('kind')
    if kind not in KINDS:
        raise StoreFormatError(f'{hp}: field "kind" is {kind!r}, expected one of {KINDS}')
    n = header.get('num_images')
    if not isinstance(n, int) or n < 0:
        raise StoreFormatError(f'{hp}: field "num_images" is {n!r}, expected an int >= 0')
    arrays = {}
    for name in ARRAYS[kind]:
        fp = osp.join(path, name + '.npy')
        try:
            arrays[name] = np.load(fp, mmap_mode='r', allow_pickle=False)
        except FileNotFoundError:
            raise StoreFormatError(f'{fp}: missing (a {kind} store needs '
                                   f'{", ".join(ARRAYS[kind])})') from None
        except ValueError as e:
            raise StoreFormatError(f'{fp}: not a readable .npy array ({e})') from None
    check_arrays(kind, n, arrays, lambda name: osp.join(path, name + '.npy'), deep=validate)
    return StoreParts(kind, header, arrays)


def _save_npy(path: str, arr: np.ndarray) -> None:
    with open(path, 'wb') as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def write_store_dir(path: PathLike, header: dict, arrays: dict) -> str:
    """Write ``header.json`` + arrays to a temp dir beside ``path``, fsync, swap into place.

    The header goes last, so a directory without a valid header is never taken for a store; an
    existing store at ``path`` is replaced atomically (:func:`~orl_plugin.utils.atomic.install_dir`), anything
    else there is refused. Returns the absolute path.
    """
    path = osp.abspath(os.fspath(path)).rstrip(os.sep)
    parent = osp.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(path)}.tmp-', dir=parent)
    try:
        for name, arr in arrays.items():
            _save_npy(osp.join(tmp, name + '.npy'), arr)
        with open(osp.join(tmp, HEADER_FILE), 'w', encoding='utf-8') as f:
            json.dump(header, f, indent=1)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        fsync_dir(tmp)
        install_dir(tmp, path, is_store_dir)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
