"""``EmbeddingCache``: every image's RoI embeddings, written once and read by any rank.

Per chunk of the mining loop, the rows of its images back to back with CSR offsets and the kept boxes; in memory
(gathered across ranks) or on disk (memory-mapped ``.npy`` files, a chunk's ``.done.npz`` written last as its done
marker, so an interrupted chunk is computed again). docs/en/advanced_guides/mining_loops.md has the layout.
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from orl_plugin.store import atomic_open

_DTYPES = {'float32': np.float32, 'float16': np.float16}


class _Chunk:
    """One chunk: rows of its images back to back, CSR offsets, boxes, skip marks."""

    __slots__ = ('emb', 'offsets', 'boxes', 'skipped', 'reasons')

    def __init__(self, emb: np.ndarray, offsets: np.ndarray, boxes: np.ndarray, skipped: np.ndarray,
                 reasons: np.ndarray) -> None:
        self.emb, self.offsets, self.boxes = emb, offsets, boxes
        self.skipped, self.reasons = skipped, reasons


class EmbeddingCache:
    """Per-image ``(B_i, D)`` embeddings and ``(B_i, 4)`` boxes, stored by chunk.

    On disk, chunk ``c`` is ``emb_<c:06d>.npy`` (``(M_c, D)``) and ``chunk_<c:06d>.done.npz`` (offsets,
    boxes, skip marks), each written to a temporary file and renamed, the ``.done.npz`` last.

    Args:
        num_images: Number of images N.
        chunk_size: Images per chunk S (the mining loop's chunk size).
        cache_dir: Folder of the disk back end; ``None`` keeps everything in memory.
        dtype: ``'float32'`` or ``'float16'``: the storage type of the embeddings (reads
            always return float32).
        max_open_chunks: Disk back end: how many chunks' memory maps stay open.
        tmp_prefix: Disk back end: prefix of this writer's temporary files (one per rank, so
            that :meth:`remove_stale_tmp` never touches another rank's file in flight).
    """

    def __init__(self,
                 num_images: int,
                 chunk_size: int,
                 cache_dir: Optional[str] = None,
                 dtype: str = 'float32',
                 max_open_chunks: int = 256,
                 tmp_prefix: str = '.tmp_') -> None:
        if dtype not in _DTYPES:
            raise ValueError(f'embed dtype must be one of {sorted(_DTYPES)}, got {dtype!r}')
        if chunk_size < 1:
            raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
        self.num_images = int(num_images)
        self.chunk_size = int(chunk_size)
        self.num_chunks = -(-self.num_images // self.chunk_size)
        self.cache_dir = cache_dir
        self.dtype = np.dtype(_DTYPES[dtype])
        self.max_open_chunks = int(max_open_chunks)
        self.tmp_prefix = tmp_prefix
        self._chunks: 'OrderedDict[int, _Chunk]' = OrderedDict()
        if cache_dir is not None:
            os.makedirs(cache_dir, exist_ok=True)

    @property
    def in_memory(self) -> bool:
        return self.cache_dir is None

    # ---------------------------------------------------------------- layout
    def chunk_of(self, i: int) -> int:
        return int(i) // self.chunk_size

    def chunk_range(self, c: int) -> range:
        return range(c * self.chunk_size, min((c + 1) * self.chunk_size, self.num_images))

    def _emb_path(self, c: int) -> str:
        return osp.join(self.cache_dir, f'emb_{c:06d}.npy')

    def _done_path(self, c: int) -> str:
        return osp.join(self.cache_dir, f'chunk_{c:06d}.done.npz')

    def remove_stale_tmp(self) -> int:
        """Delete temporary files this writer left when it was killed; returns how many."""
        if self.in_memory:
            return 0
        stale = [n for n in os.listdir(self.cache_dir) if n.startswith(self.tmp_prefix)]
        for n in stale:
            os.remove(osp.join(self.cache_dir, n))
        return len(stale)

    def is_done(self, c: int) -> bool:
        """Whether chunk ``c`` is complete (in memory, or its done marker is on disk)."""
        if self.in_memory:
            return c in self._chunks
        return osp.exists(self._done_path(c))

    # ---------------------------------------------------------------- writing
    def put_chunk(self,
                  c: int,
                  embeddings: Sequence[Optional[np.ndarray]],
                  boxes: Sequence[Optional[np.ndarray]],
                  skip_reasons: Optional[Sequence[Optional[str]]] = None) -> None:
        """Store chunk ``c``: per image of the chunk, in index order, its rows and boxes.

        A skipped image has ``None`` (or 0 rows) and its reason in ``skip_reasons``.
        """
        n = len(self.chunk_range(c))
        if len(embeddings) != n or len(boxes) != n:
            raise ValueError(f'chunk {c} holds {n} images; got {len(embeddings)} embedding '
                             f'blocks and {len(boxes)} box blocks')
        reasons = list(skip_reasons) if skip_reasons is not None else [None] * n
        dims = {e.shape[1] for e in embeddings if e is not None and len(e)}
        if len(dims) > 1:
            raise ValueError(f'chunk {c}: embeddings of different widths {sorted(dims)}')
        dim = dims.pop() if dims else 0
        counts = []
        for j, (e, b) in enumerate(zip(embeddings, boxes)):
            ne = 0 if e is None else len(e)
            nb = 0 if b is None else len(b)
            if ne != nb:
                raise ValueError(f'image {self.chunk_range(c)[j]}: {ne} embeddings for {nb} '
                                 'boxes')
            counts.append(ne)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        emb = np.concatenate([e for e in embeddings if e is not None and len(e)], axis=0) \
            if offsets[-1] else np.zeros((0, dim))
        emb = np.ascontiguousarray(emb, dtype=self.dtype)
        box = np.concatenate([np.asarray(b, dtype=np.int32).reshape(-1, 4)
                              for b in boxes if b is not None], axis=0) \
            if offsets[-1] else np.zeros((0, 4), dtype=np.int32)
        skipped = np.array([r is not None for r in reasons], dtype=bool)
        reason_arr = np.array([r or '' for r in reasons], dtype=str)
        if self.in_memory:
            self._chunks[c] = _Chunk(emb, offsets, box, skipped, reason_arr)
            return
        with atomic_open(self._emb_path(c), 'wb', tmp_prefix=self.tmp_prefix) as f:
            np.save(f, emb)
        # the done marker goes last: a chunk without it is computed again
        with atomic_open(self._done_path(c), 'wb', tmp_prefix=self.tmp_prefix) as f:
            np.savez(
                f,
                offsets=offsets,
                boxes=box,
                skipped=skipped,
                reasons=reason_arr,
                dim=np.int64(emb.shape[1]),
                dtype=np.array(str(self.dtype)))
        self._chunks.pop(c, None)

    def all_gather(self) -> None:
        """Memory back end under torch.distributed: give every rank every rank's chunks."""
        from mmengine.dist import all_gather_object, get_world_size
        if not self.in_memory or get_world_size() == 1:
            return
        mine = {c: (ch.emb, ch.offsets, ch.boxes, ch.skipped, ch.reasons) for c, ch in self._chunks.items()}
        for part in all_gather_object(mine):
            for c, arrays in part.items():
                if c not in self._chunks:
                    self._chunks[c] = _Chunk(*arrays)

    # ---------------------------------------------------------------- reading
    def _chunk(self, c: int) -> _Chunk:
        ch = self._chunks.get(c)
        if ch is not None:
            if not self.in_memory:
                self._chunks.move_to_end(c)
            return ch
        if self.in_memory or not self.is_done(c):
            raise KeyError(f'embedding chunk {c} (images {self.chunk_range(c).start}..'
                           f'{self.chunk_range(c).stop - 1}) has not been computed' +
                           ('' if self.in_memory else f' (no {self._done_path(c)})'))
        with np.load(self._done_path(c), allow_pickle=False) as z:
            meta = {k: z[k] for k in z.files}
        if str(meta['dtype']) != str(self.dtype):
            raise ValueError(f'{self._done_path(c)} holds {meta["dtype"]} embeddings, the cache '
                             f'was opened for {self.dtype}')
        emb = np.load(self._emb_path(c), mmap_mode='r')
        if emb.shape[0] != meta['offsets'][-1]:
            raise ValueError(f'{self._emb_path(c)} has {emb.shape[0]} rows, offsets in '
                             f'{self._done_path(c)} say {int(meta["offsets"][-1])}')
        ch = _Chunk(emb, meta['offsets'], meta['boxes'], meta['skipped'], meta['reasons'])
        self._chunks[c] = ch
        while len(self._chunks) > self.max_open_chunks:
            self._chunks.popitem(last=False)
        return ch

    def get(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(embeddings (B_i, D) float32, boxes (B_i, 4) int32)`` of image ``i``."""
        ch = self._chunk(self.chunk_of(i))
        j = int(i) - self.chunk_of(i) * self.chunk_size
        s, e = int(ch.offsets[j]), int(ch.offsets[j + 1])
        return np.array(ch.emb[s:e], dtype=np.float32), np.array(ch.boxes[s:e])

    def skip_reason(self, i: int) -> Optional[str]:
        """Why image ``i`` was skipped in phase 1, or ``None`` when it was encoded."""
        ch = self._chunk(self.chunk_of(i))
        j = int(i) - self.chunk_of(i) * self.chunk_size
        return str(ch.reasons[j]) if ch.skipped[j] else None

    def num_rows(self) -> int:
        """Total embeddings held (all chunks must be done)."""
        return sum(int(self._chunk(c).offsets[-1]) for c in range(self.num_chunks))

    def done_chunks(self) -> List[int]:
        return [c for c in range(self.num_chunks) if self.is_done(c)]

    def chunk_arrays(self, c: int) -> Dict[str, np.ndarray]:
        """The stored arrays of chunk ``c`` (for tests and tools)."""
        ch = self._chunk(c)
        return dict(emb=np.asarray(ch.emb), offsets=ch.offsets, boxes=ch.boxes, skipped=ch.skipped, reasons=ch.reasons)
