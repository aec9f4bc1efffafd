"""``MiningLoop``: the chunked, resumable, distributed base loop of the stage-2 mining steps.

A stage-2 step is ``Runner.test()`` with ``test_cfg=dict(type=<a MiningLoop subclass>)``. The loop cuts the data
set into fixed chunks, gives chunk ``c`` to rank ``c % W``, caches every finished chunk (a rerun computes only
the rest) and feeds the results to the evaluator, which gathers and writes them. A subclass implements
``process_batch`` (or ``process_chunk``) and extends ``fingerprint``: docs/en/advanced_guides/mining_loops.md.
"""
import copy
import hashlib
import json
import logging
import math
import os
import os.path as osp
from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

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
from orl_plugin.utils.atomic import atomic_write_json

from .checkpoint_check import check_checkpoint_keys
from .chunk_cache import CACHE_FORMAT_VERSION, json_default, load_chunk, save_chunk
from .progress import Progress
from .skip_bad_images import SkipBadImages, collate_skipping

# Data-info fields attached to every result before it reaches the evaluator.
INFO_KEYS = ('img_path', 'file_name', 'img_id', 'width', 'height', 'gt_bboxes', 'gt_labels', 'gt_masks')


@LOOPS.register_module()
class MiningLoop(BaseLoop):
    """Chunked, resumable, distributed base loop of the stage-2 mining steps.

    A subclass implements :meth:`process_batch` (images through the test data loader) or
    :meth:`process_chunk` (full control over a chunk), extends :meth:`fingerprint` with every parameter
    its results depend on, and may override :meth:`check_model`, :meth:`checkpoint_modules` and
    :meth:`before_mining`. Each image gives one result dict; a bad image gives
    ``dict(index=i, skipped=True, skip_reason=...)``. docs/en/advanced_guides/mining_loops.md has the details.

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
        key = hashlib.sha1(json.dumps(fp, sort_keys=True, default=json_default).encode()).hexdigest()
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
            fingerprint=json.loads(json.dumps(fp, default=json_default)))
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
            progress = Progress(self.step_name, sum(len(self.chunk_indices(c)) for c in chunks), self.log_interval)
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
            SkipBadImages(self.dataset),
            batch_sampler=batches,
            num_workers=src.num_workers,
            collate_fn=partial(collate_skipping, collate_fn=src.collate_fn),
            pin_memory=src.pin_memory,
            worker_init_fn=src.worker_init_fn,
            persistent_workers=False)
        progress = Progress(self.step_name, sum(len(b) for b in batches), self.log_interval)
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
            osp.join(self.cache_dir, 'fingerprint.json'), dict(sha1=key, **fp), sort_keys=True, default=json_default)
