"""``StoreHandle``: a store opened once per process, for data sets read by data-loader workers."""
from __future__ import annotations

import os
from typing import Optional

from .format import PathLike
from .mining_store import MiningStore

__all__ = ['StoreHandle']


class StoreHandle:
    """Opens the store at ``path`` on first use, once per process.

    A native store is memory-mapped again in every process that uses it (a data-loader worker,
    forked or spawned), and pickles as its path, so workers share its pages through the page
    cache instead of inheriting mappings. An official JSON file is parsed once and the in-memory
    store travels with the handle (parsing it again in each worker would take minutes at COCO
    size). Only the first open validates the arrays fully; later opens check shapes only.

    Args:
        path: ``*.orlstore`` directory or official ``.json`` file.
        kind: the kind the file must hold.
    """

    def __init__(self, path: PathLike, kind: Optional[str] = None) -> None:
        self.path = os.fspath(path)
        self.kind = kind
        self._store: Optional[MiningStore] = None
        self._pid: Optional[int] = None
        self._validated = False

    def get(self) -> MiningStore:
        """The store, opened in this process (on the first call here)."""
        pid = os.getpid()
        if self._store is None or (self._pid != pid and self._store.source == 'store'):
            self._store = MiningStore.open(self.path, kind=self.kind, validate=not self._validated)
            self._validated = True
            self._pid = pid
        return self._store

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._store is not None and self._store.source == 'store':
            state['_store'] = None  # the receiving process maps the files itself
        return state

    def __repr__(self) -> str:
        return f'StoreHandle({self.path!r}, kind={self.kind!r})'
