"""``MiningLoop``: the chunked, resumable, distributed base loop of the stage-2 mining steps.

A stage-2 step is ``Runner.test()`` with ``test_cfg=dict(type=<a MiningLoop subclass>, ...)``.
The loop splits the data set into fixed chunks of global indices ``[c*S, (c+1)*S)``
(``S = chunk_size``); rank ``r`` of ``W`` computes the chunks with ``c % W == r``, so the split,
the batches (they never straddle a chunk) and therefore the results do not depend on the number
of ranks. Every finished chunk is written atomically to ``<cache_dir>/chunk_<c:06d>.npz``; a
rerun after any kill (SIGKILL included) loads the finished chunks and computes only the rest.
The chunks live in ``<cache root>/<fingerprint hash>/`` (root: ``cache_dir`` or
``<work_dir>/mining_cache/<step_name>``), so a cache made with other inputs (data, pipeline,
checkpoint, parameters) is never reused.
Each image gives one result dict (``index`` = its global position, plus step fields);
loaded and computed chunks alike go to ``self.evaluator.process``; the metric gathers them across
ranks (mmengine ``collect_results``), writes the output and scores it
(``self.evaluator.evaluate(len(dataset))``).

How a subclass uses it (the base computes pending chunks with ``process_chunk`` when the
subclass overrides it, otherwise by streaming images through ``process_batch``):

- ``step_name`` (class attribute): names the cache folder and the log lines.
- ``process_batch(data_batch) -> list[dict]``: the common case. The base streams the chunks'
  images through ONE data loader built from the runner's ``test_dataloader`` settings
  (dataset, batch size, workers, collate_fn; workers start once per run) and calls this
  with each collated batch of readable images. Return one dict per image, in batch order;
  the base adds ``index``. Use ``self.model`` (unwrapped from DDP) for forwards.
- ``process_chunk(indices) -> list[dict]``: full control, when the step does not read
  images through the test data loader (e.g. matching cached embeddings). Called once per
  pending chunk with its global indices; return one dict per index, in order.
- ``fingerprint() -> dict``: extend ``super().fingerprint()`` with every parameter that
  changes the results (JSON-serialisable); it keys the cache.
- ``before_mining()``: optional set-up that needs the loaded checkpoint (it runs after
  ``load_from`` is applied, before any chunk); the base puts the model in eval mode.
- ``check_model()``: raise a clear error when the model lacks what the step reads (runs first).
- ``checkpoint_modules() -> tuple``: the model parts whose weights the step reads (e.g.
  ``('backbone', 'neck')``); the base refuses a ``load_from`` checkpoint without all of them
  (mmengine only warns) before ``before_mining``.
- ``stream_chunks(chunk_ids)``: helper that yields ``(chunk_id, results)`` through
  ``process_batch`` (for a step with an image pass before its ``process_chunk`` phase).

Metric side: ``orl_plugin.evaluation.mining_metric.MiningMetric`` (keeps ``result_keys``,
orders gathered results by ``index``, writes stores); the loop sets its ``mining_provenance``
(step, config, cache key, fingerprint) before ``evaluate``.

Result values must be numpy arrays (ragged along axis 0 is fine), numpy/python scalars or
strings: that is what the cache stores (``.npz``, loaded with ``allow_pickle=False``).

Bad images: when the pipeline raises ``BadImageError`` (``LoadImageOrSkip`` does, for missing,
empty or undecodable files), the image is skipped: its result is
``{'index': i, 'skipped': True, 'skip_reason': '...'}`` and the run goes on; metrics count and
list skipped images in their output header. The rule of every stage
(:mod:`orl_plugin.datasets.bad_images`, the data set's ``max_bad_fraction``) stops the step once more
than that share of the rank's images are unreadable, naming every unreadable file it finds. Any
other exception propagates.

When fed to the evaluator every result also gets, from the data set's annotation (never cached,
never read from the image): ``img_path``, ``file_name``, ``img_id``, ``width``, ``height``,
``gt_bboxes``, ``gt_labels``, ``gt_masks`` (those the data set has).
"""
import copy
import hashlib
import json
import logging
import math
import os
import os.path as osp
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.base_loop import BaseLoop
from mmpretrain.registry import LOOPS
from torch.utils.data import DataLoader, Dataset

from orl_plugin.datasets.bad_images import (DEFAULT_MAX_BAD_FRACTION, TooManyBadImagesError, log_unreadable,
                                            search_unreadable, stop_message, too_many_bad)
from orl_plugin.datasets.transforms.loading import BadImageError
from orl_plugin.store import atomic_open, atomic_write_json

from .checkpoint_check import check_checkpoint_keys

# Data-info fields attached to every result before it reaches the evaluator.
INFO_KEYS = ('img_path', 'file_name', 'img_id', 'width', 'height', 'gt_bboxes', 'gt_labels', 'gt_masks')
CACHE_FORMAT_VERSION = 1


@dataclass
class SkippedSample:
    """What a data-loader worker returns instead of a sample whose image is bad."""

    reason: str


class _SkipBadImages(Dataset):
    """Dataset view that turns ``BadImageError`` into a ``SkippedSample`` marker."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Any:
        try:
            return self.dataset[idx]
        except BadImageError as e:
            return SkippedSample(reason=str(e))


def _collate_skipping(batch: Sequence[Any], collate_fn: Callable) -> dict:
    """Collate the readable samples of a batch; report the positions of skipped ones."""
    valid = [i for i, b in enumerate(batch) if not isinstance(b, SkippedSample)]
    skipped = {i: b.reason for i, b in enumerate(batch) if isinstance(b, SkippedSample)}
    # gt_masks (ragged, for the metric: INFO_KEYS) would not collate
    samples = [{k: v for k, v in batch[i].items() if k != 'gt_masks'} if isinstance(batch[i], dict) else batch[i]
               for i in valid]
    data = collate_fn(samples) if valid else None
    return dict(data=data, valid=valid, skipped=skipped)


# ----------------------------------------------------------------------------------------
# Chunk cache: list[dict] <-> npz without pickle.
# ----------------------------------------------------------------------------------------
def encode_results(results: List[dict]) -> Dict[str, np.ndarray]:
    """Flatten per-image result dicts into named arrays (``np.savez`` without pickle).

    Per key ``k``: ``k.has`` (bool mask, only when some results lack ``k``), and either
    ``k.data`` + ``k.len`` (arrays, concatenated along axis 0) or ``k.val`` (scalars/strings).
    """
    keys = sorted({k for r in results for k in r})
    out: Dict[str, np.ndarray] = {'__n__': np.array(len(results), dtype=np.int64)}
    for k in keys:
        if '.' in k:
            raise ValueError(f'result key {k!r} must not contain a dot')
        has = np.array([k in r for r in results], dtype=bool)
        vals = [r[k] for r in results if k in r]
        if not has.all():
            out[f'{k}.has'] = has
        if all(isinstance(v, np.ndarray) and v.ndim >= 1 for v in vals):
            dtypes = {v.dtype for v in vals}
            tails = {v.shape[1:] for v in vals}
            if len(dtypes) != 1 or len(tails) != 1:
                raise ValueError(f'result field {k!r}: arrays must share dtype and trailing '
                                 f'shape to be cached, got {dtypes} and {tails}')
            out[f'{k}.data'] = np.concatenate(vals, axis=0)
            out[f'{k}.len'] = np.array([len(v) for v in vals], dtype=np.int64)
        elif any(isinstance(v, (np.ndarray, list, tuple, dict)) and np.ndim(v) > 0 for v in vals):
            raise TypeError(f'result field {k!r} mixes arrays and scalars or holds '
                            'lists/dicts; use numpy arrays or scalars')
        else:
            out[f'{k}.val'] = np.array(vals)
    return out


def decode_results(arrays: Dict[str, np.ndarray]) -> List[dict]:
    """Inverse of :func:`encode_results`."""
    n = int(arrays['__n__'])
    results: List[dict] = [dict() for _ in range(n)]
    keys = sorted({name.rsplit('.', 1)[0] for name in arrays if name != '__n__'})
    for k in keys:
        has = arrays.get(f'{k}.has')
        owners = [i for i in range(n) if has is None or has[i]]
        if f'{k}.data' in arrays:
            data, lens = arrays[f'{k}.data'], arrays[f'{k}.len']
            starts = np.concatenate([[0], np.cumsum(lens)])
            for j, i in enumerate(owners):
                results[i][k] = data[starts[j]:starts[j + 1]]
        else:
            vals = arrays[f'{k}.val']
            for j, i in enumerate(owners):
                results[i][k] = vals[j].item()
    return results


def save_chunk(path: str, results: List[dict], tmp_prefix: str = '.tmp_') -> None:
    """Write a chunk atomically (its temporary file's name starts with ``tmp_prefix``)."""
    with atomic_open(path, 'wb', tmp_prefix=tmp_prefix) as f:
        np.savez(f, **encode_results(results))


def load_chunk(path: str) -> List[dict]:
    """Read a chunk written by :func:`save_chunk`."""
    with np.load(path, allow_pickle=False) as z:
        return decode_results({name: z[name] for name in z.files})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return repr(obj)


@LOOPS.register_module()
class MiningLoop(BaseLoop):
    """Chunked, resumable, distributed base loop of the stage-2 mining steps.

    See the module docstring for how a subclass uses it.

    Args:
        runner: The runner.
        dataloader: The ``test_dataloader`` config (or a DataLoader); its dataset, batch size,
            workers and collate_fn are used, its sampler is not (chunks decide the order).
        evaluator: The ``test_evaluator`` config or object (a mining metric).
        chunk_size (int): Images per chunk (the unit of caching and of rank assignment).
        cache_dir (str, optional): Chunk cache root (default ``<work_dir>/mining_cache/
            <step_name>``); chunks go to its ``<fingerprint hash>`` sub-folder.
        log_interval (float): Seconds between progress lines.
    """

    step_name: str = 'mining'

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List],
                 chunk_size: int = 256,
                 cache_dir: Optional[str] = None,
                 log_interval: float = 30.0) -> None:
        self._dataloader_cfg = copy.deepcopy(dataloader) if isinstance(dataloader, dict) else None
        super().__init__(runner, dataloader)
        if isinstance(evaluator, (dict, list)):
            self.evaluator = runner.build_evaluator(evaluator)
        else:
            self.evaluator = evaluator
        if hasattr(self.dataset, 'metainfo'):
            self.evaluator.dataset_meta = self.dataset.metainfo
        if chunk_size < 1:
            raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
        self.chunk_size = int(chunk_size)
        self._cache_dir_cfg = cache_dir
        self.log_interval = float(log_interval)
        self.cache_dir: Optional[str] = None
        self.num_skipped = 0
        self.skipped_named: List[str] = []  # the first 20 skipped images, with their reasons
        self._unreadable: List[str] = []  # every skipped image, as 'path (reason)'
        self._rank_chunks: List[int] = []
        self._rank_images = 0
        self._fed_chunks: set = set()
        self._num_fed = 0

    # ------------------------------------------------------------------ extension points
    def process_batch(self, data_batch: Any) -> List[dict]:
        """Compute the results of one collated batch of readable images (one dict each)."""
        raise NotImplementedError(f'{type(self).__name__} must implement process_batch() or process_chunk()')

    def process_chunk(self, indices: List[int]) -> List[dict]:
        """Compute the results of one chunk of global indices (one dict each, in order).

        Not overridden: the base streams the images through ``process_batch`` instead.
        """
        raise NotImplementedError

    def fingerprint(self) -> dict:
        """Everything the results depend on; extend it in subclasses (JSON-serialisable)."""
        fp = dict(
            cache_format=CACHE_FORMAT_VERSION,
            step=self.step_name,
            loop=type(self).__name__,
            chunk_size=self.chunk_size,
            batch_size=self.batch_size,
            dataset=self._dataset_fingerprint(),
            checkpoint=self._checkpoint_fingerprint(),
        )
        if self._dataloader_cfg is not None:
            fp['pipeline'] = self._dataloader_cfg.get('dataset', {}).get('pipeline')
        return fp

    def before_mining(self) -> None:
        """Set-up after the checkpoint is loaded and before the first chunk."""

    def check_model(self) -> None:
        """Raise a clear error when the model lacks the interface this step reads."""

    def checkpoint_modules(self) -> Tuple[str, ...]:
        """The model parts whose weights this step reads (checked in the ``load_from`` file)."""
        return ()

    # ------------------------------------------------------------------ helpers for subclasses
    @property
    def dataset(self) -> Dataset:
        return self.dataloader.dataset

    @property
    def batch_size(self) -> int:
        return self.dataloader.batch_size or 1

    @property
    def model(self) -> torch.nn.Module:
        """The runner's model without its DDP wrapper (mining needs no gradient sync)."""
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def chunk_indices(self, chunk_id: int) -> List[int]:
        start = chunk_id * self.chunk_size
        return list(range(start, min(start + self.chunk_size, len(self.dataset))))

    def chunk_path(self, chunk_id: int) -> str:
        assert self.cache_dir is not None
        return osp.join(self.cache_dir, f'chunk_{chunk_id:06d}.npz')

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        """Compute or load every chunk of this rank, then evaluate (gather + write)."""
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        self.check_model()
        path = getattr(self.runner, '_load_from', None)
        modules = self.checkpoint_modules()
        if path and modules:
            check_checkpoint_keys(self.model, modules, path, step=self.step_name)
        self.before_mining()

        rank, world_size = get_dist_info()
        num_images = len(self.dataset)
        num_chunks = math.ceil(num_images / self.chunk_size)
        fp = self.fingerprint()
        key = hashlib.sha1(json.dumps(fp, sort_keys=True, default=_json_default).encode()).hexdigest()
        base = self._cache_dir_cfg or osp.join(self.runner.work_dir, 'mining_cache', self.step_name)
        self.cache_dir = osp.join(base, key[:16])
        os.makedirs(self.cache_dir, exist_ok=True)
        if rank == 0:
            self._write_fingerprint(fp, key)

        # Temp files of chunks this rank was writing when it was killed.
        tmp_prefix = f'.tmp_rank{rank}_'
        for name in os.listdir(self.cache_dir):
            if name.startswith(tmp_prefix):
                os.remove(osp.join(self.cache_dir, name))

        mine = [c for c in range(num_chunks) if c % world_size == rank]
        self._rank_chunks = mine
        self._rank_images = sum(len(self.chunk_indices(c)) for c in mine)
        done = [c for c in mine if osp.exists(self.chunk_path(c))]
        pending = sorted(set(mine) - set(done))
        print_log(
            f'[{self.step_name}] {num_images} images in {num_chunks} chunks of {self.chunk_size}; '
            f'rank {rank}/{world_size}: {len(done)} chunks cached, {len(pending)} to compute; '
            f'cache {self.cache_dir}',
            logger='current')

        for c in done:
            self._feed(load_chunk(self.chunk_path(c)), c)
        for c, results in self._compute(pending):
            save_chunk(self.chunk_path(c), results, tmp_prefix)
            self._feed(results, c)
        if self.num_skipped:
            more = self.num_skipped - len(self.skipped_named)
            print_log(
                f'[{self.step_name}] rank {rank}: {self.num_skipped} images skipped: ' + '; '.join(self.skipped_named) +
                (f'; and {more} more' if more else ''),
                logger='current',
                level=logging.WARNING)

        prov = dict(
            step=self.step_name,
            loop=type(self).__name__,
            cache_key=key,
            config=getattr(self.runner.cfg, 'filename', None),
            fingerprint=json.loads(json.dumps(fp, default=_json_default)))
        for metric in self.evaluator.metrics:
            if hasattr(metric, 'mining_provenance'):
                metric.mining_provenance = prov
        metrics = self.evaluator.evaluate(num_images)
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        return metrics

    # ------------------------------------------------------------------ internals
    def _compute(self, chunks: List[int]) -> Iterator[Tuple[int, List[dict]]]:
        if not chunks:
            return
        if type(self).process_chunk is not MiningLoop.process_chunk:
            progress = _Progress(self.step_name, sum(len(self.chunk_indices(c)) for c in chunks), self.log_interval)
            for c in chunks:
                indices = self.chunk_indices(c)
                results = self.process_chunk(indices)
                self._check(results, len(indices), f'process_chunk (chunk {c})')
                for i, r in zip(indices, results):
                    r.setdefault('index', i)
                progress.update(len(indices))
                yield c, results
            progress.finish()
        else:
            yield from self.stream_chunks(chunks)

    def stream_chunks(self, chunks: List[int]) -> Iterator[Tuple[int, List[dict]]]:
        """Yield ``(chunk_id, results)`` for ``chunks`` through ``process_batch``.

        One data loader over all their images (workers start once); batches never straddle
        chunks, so a chunk's results do not depend on which other chunks are computed with it.
        Subclasses with an extra image pass (e.g. a phase before ``process_chunk``) can call it.
        """
        batches: List[List[int]] = []
        batch_chunk: List[int] = []
        for c in chunks:
            idx = self.chunk_indices(c)
            for s in range(0, len(idx), self.batch_size):
                batches.append(idx[s:s + self.batch_size])
                batch_chunk.append(c)
        src = self.dataloader
        loader = DataLoader(
            _SkipBadImages(self.dataset),
            batch_sampler=batches,
            num_workers=src.num_workers,
            collate_fn=partial(_collate_skipping, collate_fn=src.collate_fn),
            pin_memory=src.pin_memory,
            worker_init_fn=src.worker_init_fn,
            persistent_workers=False)
        progress = _Progress(self.step_name, sum(len(b) for b in batches), self.log_interval)
        current: List[dict] = []
        with torch.no_grad():
            for b, (indices, out) in enumerate(zip(batches, loader)):
                c = batch_chunk[b]
                computed = self.process_batch(out['data']) if out['valid'] else []
                self._check(computed, len(out['valid']), 'process_batch')
                per_pos: Dict[int, dict] = dict(zip(out['valid'], computed))
                for pos, reason in out['skipped'].items():
                    per_pos[pos] = dict(skipped=True, skip_reason=reason)
                for pos, i in enumerate(indices):
                    r = per_pos[pos]
                    if r.get('index', i) != i:
                        raise RuntimeError(f'{type(self).__name__}: result for index {i} says '
                                           f"index {r['index']}")
                    r['index'] = i
                    current.append(r)
                progress.update(len(indices))
                if b + 1 == len(batches) or batch_chunk[b + 1] != c:
                    yield c, current
                    current = []
        progress.finish()

    def _check(self, results: Any, expected: int, what: str) -> None:
        if not isinstance(results, list) or len(results) != expected or \
                not all(isinstance(r, dict) for r in results):
            raise RuntimeError(f'{type(self).__name__}.{what} must return a list of {expected} '
                               f'dicts, got {type(results).__name__} of length '
                               f'{len(results) if hasattr(results, "__len__") else "?"}')

    def _feed(self, results: List[dict], chunk_id: int) -> None:
        expected = self.chunk_indices(chunk_id)
        if [r['index'] for r in results] != expected:
            raise RuntimeError(f'chunk {chunk_id} in {self.cache_dir} does not hold indices '
                               f'{expected[0]}..{expected[-1]}; delete the cache folder')
        for r in results:
            info = self.dataset.get_data_info(r['index'])
            if r.get('skipped', False):
                self.num_skipped += 1
                path, reason = str(info.get('img_path', r['index'])), str(r.get('skip_reason', '?'))
                # BadImageError reasons start with the path already
                if len(self.skipped_named) < 20:
                    self.skipped_named.append(reason if path in reason else f'{path}: {reason}')
                self._unreadable.append(f'{path} ({reason[len(path) + 2:] if reason.startswith(path) else reason})')
            for k in INFO_KEYS:
                if k in info and k not in r:
                    r[k] = info[k]
        self._num_fed += len(results)
        self._fed_chunks.add(chunk_id)
        # Images are read in list order, where broken files may sit together: only the certain test.
        if too_many_bad(self.num_skipped, self._num_fed, self._rank_images, self.max_bad_fraction, sampled=False):
            self._stop_for_bad_images()
        self.evaluator.process(data_samples=results)

    @property
    def max_bad_fraction(self) -> Optional[float]:
        """The data set's ``max_bad_fraction`` (the rule of every stage), or its default."""
        return getattr(self.dataset, 'max_bad_fraction', DEFAULT_MAX_BAD_FRACTION)

    def _stop_for_bad_images(self) -> None:
        """Read this rank's images not read yet (for a while) and stop, naming every unreadable file."""
        rank, world_size = get_dist_info()
        unread = [i for c in self._rank_chunks if c not in self._fed_chunks for i in self.chunk_indices(c)]
        bad, good, unchecked = search_unreadable((i, self.dataset.get_data_info(i)['img_path']) for i in unread)
        named = self._unreadable + [f'{e.img_path} ({e.reason})' for _, e in bad]
        owner = f'[{self.step_name}]' + (f' rank {rank}' if world_size > 1 else '')
        log_unreadable(owner, named)
        raise TooManyBadImagesError(
            stop_message(owner, named, self._num_fed + len(bad) + len(good), self._rank_images, self.max_bad_fraction,
                         unchecked))

    def _dataset_fingerprint(self) -> dict:
        h = hashlib.sha1()
        n = len(self.dataset)
        get_info = getattr(self.dataset, 'get_data_info', None)
        if get_info is not None:
            for i in range(n):
                h.update(str(get_info(i).get('img_path', i)).encode())
                h.update(b'\0')
        return dict(type=type(self.dataset).__name__, length=n, img_paths_sha1=h.hexdigest())

    def _checkpoint_fingerprint(self) -> Optional[dict]:
        path = getattr(self.runner, '_load_from', None)
        if not path:
            return None
        if osp.exists(path):
            st = os.stat(path)
            return dict(path=osp.abspath(path), size=st.st_size, mtime_ns=st.st_mtime_ns)
        return dict(path=str(path))  # remote checkpoints: the URL is the identity

    def _write_fingerprint(self, fp: dict, key: str) -> None:
        atomic_write_json(
            osp.join(self.cache_dir, 'fingerprint.json'), dict(sha1=key, **fp), sort_keys=True, default=_json_default)


class _Progress:
    """Images/s and ETA lines for this rank, at most every ``interval`` seconds."""

    def __init__(self, name: str, total: int, interval: float) -> None:
        self.name, self.total, self.interval = name, total, interval
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = timedelta(seconds=int((self.total - self.done) / max(rate, 1e-9)))
            rank, _ = get_dist_info()
            print_log(f'[{self.name}] rank {rank}: {self.done}/{self.total} images, '
                      f'{rate:.2f} img/s, ETA {eta}',
                      logger='current')

    def finish(self) -> None:
        elapsed = time.monotonic() - self.start
        rank, _ = get_dist_info()
        print_log(
            f'[{self.name}] rank {rank}: computed {self.done} images in {elapsed:.1f} s '
            f'({self.done / max(elapsed, 1e-9):.2f} img/s)',
            logger='current')
