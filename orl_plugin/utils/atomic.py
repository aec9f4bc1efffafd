"""Atomic writes: a file or a directory appears complete at its path, or not at all.

Every writer of the package goes through :func:`atomic_open` (a temporary file beside the target,
flushed, fsync'ed and renamed over it; removed on any error, ``KeyboardInterrupt`` included) or,
for a store directory, :func:`install_dir`. A reader never sees a half-written file, and a job
killed at any point (SIGKILL included) leaves at most a temporary file that the next run of the
same writer can recognise by its prefix and delete.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import os.path as osp
import shutil
import sys
import uuid
from contextlib import contextmanager
from typing import IO, Any, Callable, Iterator, Optional, Union

PathLike = Union[str, os.PathLike]

__all__ = ['atomic_open', 'atomic_write_json', 'fsync_dir', 'install_dir']


def fsync_dir(path: str) -> None:
    """fsync a directory so that a rename in it survives a power cut (no-op where unsupported)."""
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


@contextmanager
def atomic_open(path: PathLike, mode: str = 'wb', *, tmp_prefix: str = '.', **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    The temporary file is named ``<tmp_prefix><name>.<pid>.<random>.tmp`` in the target folder
    (created if missing) and gets the usual umask permissions. On leaving the block it is flushed,
    fsync'ed and renamed over ``path`` (``os.replace``), then the folder is fsync'ed; on any
    exception it is removed and the exception propagates. ``path`` is never partly written.

    Example::

        with atomic_open(path, 'wb') as f:
            np.savez(f, a=a)   # or torch.save(obj, f), f.write(...), json.dump(obj, f) in 'w'
    """
    if not mode.startswith('w'):
        raise ValueError(f"atomic_open writes files: mode must start with 'w', got {mode!r}")
    path = osp.abspath(os.fspath(path))
    parent = osp.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = osp.join(parent, f'{tmp_prefix}{osp.basename(path)}.{os.getpid()}.'
                   f'{uuid.uuid4().hex[:8]}.tmp')
    f = open(tmp, 'x' + mode[1:], **open_kwargs)
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.lexists(tmp):
            os.remove(tmp)
        raise
    fsync_dir(parent)


def atomic_write_json(path: PathLike,
                      obj: Any,
                      *,
                      tmp_prefix: str = '.',
                      default: Optional[Callable[[Any], Any]] = str,
                      **dump_kwargs: Any) -> str:
    """Write ``obj`` as UTF-8 JSON with :func:`atomic_open` (``indent=1`` unless given);
    values JSON cannot encode go through ``default`` (``str``). Returns the absolute path."""
    dump_kwargs.setdefault('indent', 1)
    with atomic_open(path, 'w', tmp_prefix=tmp_prefix, encoding='utf-8') as f:
        json.dump(obj, f, default=default, **dump_kwargs)
        f.write('\n')
    return osp.abspath(os.fspath(path))


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


def install_dir(tmp: str, target: str, replaceable: Callable[[str], bool]) -> None:
    """Move the finished directory ``tmp`` to ``target`` (same file system).

    An existing ``target`` is replaced only when ``replaceable(target)`` says so (e.g. it is a
    store), by an atomic swap where the OS has one (Linux ``renameat2``), else by renaming it
    aside first. Readers of the old directory keep working: their open files and memory maps
    hold the unlinked files.
    """
    if not osp.lexists(target):
        os.rename(tmp, target)
        return
    if osp.islink(target) or not osp.isdir(target) or not replaceable(target):
        raise FileExistsError(f'{target} exists and is not an orl_plugin store; '
                              'refusing to replace it')
    if _rename_exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
        return
    old = tmp + '.old'
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
