"""``CorrespondenceLoop``: stage 2c of ORL (RoI pair retrieval) with every box encoded once.

Phase 1 encodes every image's kept boxes exactly once into an :class:`EmbeddingCache` (the official release encodes
a neighbour's boxes again for every query that retrieves it); phase 2 makes each query's pairs from the cached
embeddings only, the same pairs as the official procedure's. docs/en/advanced_guides/mining_loops.md has the phases.
"""
import hashlib
import json
import os
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log
from mmpretrain.registry import LOOPS, MODELS
from torch.utils.data import DataLoader

from orl_plugin.datasets.transforms.box_filter import FilterBoxes
from orl_plugin.datasets.transforms.crop_boxes import CropBoxes
from orl_plugin.store import MiningStore, atomic_write_json, check_image_list

from .chunk_cache import json_default
from .embedding_cache import EmbeddingCache
from .mining_loop import MiningLoop


def _pair_rule_cfg(pair_rule: Optional[dict], ratio: Optional[float]) -> dict:
    """The pair-rule config from ``pair_rule`` and the ``topk_bbox_ratio`` shorthand."""
    if pair_rule is None:
        return dict(type='TopRatioPairs', ratio=0.1 if ratio is None else ratio)
    cfg = dict(pair_rule)
    if ratio is not None:
        if 'ratio' in cfg and cfg['ratio'] != ratio:
            raise ValueError(f'CorrespondenceLoop: topk_bbox_ratio={ratio} and pair_rule.ratio='
                             f'{cfg["ratio"]} disagree; give the ratio once')
        cfg['ratio'] = ratio
    return cfg


def _path_identity(path: str) -> dict:
    """What identifies a store/JSON on disk for the caches (path, size, mtime)."""
    p = osp.abspath(path)
    target = osp.join(p, 'header.json') if osp.isdir(p) else p
    if not osp.exists(target):
        return dict(path=p)
    st = os.stat(target)
    return dict(path=p, size=st.st_size, mtime_ns=st.st_mtime_ns)


def _find_transform(pipeline: Any, cls: type) -> Optional[Any]:
    for t in getattr(pipeline, 'transforms', []) or []:
        if isinstance(t, cls):
            return t
    return None


@LOOPS.register_module()
class CorrespondenceLoop(MiningLoop):
    """Stage 2c: encode every image's kept boxes once, then mine RoI pairs per neighbour.

    The ``test_dataloader`` dataset is a ``ProposalDataset`` whose pipeline loads the image
    (``LoadImageOrSkip``), filters its proposals (``FilterBoxes``) and crops the kept boxes
    (``CropBoxes``); its ``batch_size`` is the number of images per data batch; the crops of a
    batch are encoded ``encode_batch_size`` at a time. The features and the pair rule are
    model-side components (``roi_feature``, ``pair_rule``) that work with any mmpretrain
    self-supervised model or classifier as the stage-1 ``model``.

    Args:
        runner, dataloader, evaluator, chunk_size, cache_dir, log_interval: See
            :class:`MiningLoop` (``cache_dir`` holds the phase-2 pair chunks).
        knn_file (str): KNN ``*.orlstore`` or official KNN JSON (same image list and order).
        knn_image_num (int, optional): Neighbours used per image (the first ones); default all
            stored (10 at paper settings).
        topk_bbox_ratio (float, optional): The official ``knn_bbox_pair_ratio``: pairs per
            neighbour = ``max(1, int(ratio * B))``; the ``ratio`` of ``pair_rule``. Default 0.1.
        pair_rule (dict, optional): The pair-rule component; default
            ``dict(type='TopRatioPairs', ratio=topk_bbox_ratio)`` (the official rule). Give the
            ratio in one of the two places (both only when they agree).
        roi_feature (dict): The per-box feature component. Default
            ``dict(type='RoIFeature')`` (the official pooled backbone feature).
        encode_batch_size (int): Crops per backbone forward. Default 256.
        embed_cache (str): ``'disk'`` (memory-mapped per-chunk files, resumable),
            ``'memory'`` (no files; phase 1 is redone after an interruption) or ``'auto'``
            (memory up to ``memory_max_images`` images). Default ``'auto'``.
        embed_dtype (str): ``'float32'`` (pairs exactly as the official fp32 procedure) or
            ``'float16'`` (half the disk/memory). Default ``'float32'``.
        embed_cache_dir (str, optional): Folder of the disk embedding cache (a sub-folder per
            fingerprint hash is made in it); default ``<work_dir>/mining_cache/
            correspondence_embed``. Every rank reads every chunk, so with several nodes it must
            be on a shared file system (or use ``'memory'``, which gathers over the network).
        memory_max_images (int): Threshold of ``embed_cache='auto'``. Default 5000.
    """

    step_name = 'correspondence'

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Any, Dict, List],
                 knn_file: str,
                 knn_image_num: Optional[int] = None,
                 topk_bbox_ratio: Optional[float] = None,
                 pair_rule: Optional[dict] = None,
                 roi_feature: dict = dict(type='RoIFeature'),
                 encode_batch_size: int = 256,
                 embed_cache: str = 'auto',
                 embed_dtype: str = 'float32',
                 embed_cache_dir: Optional[str] = None,
                 memory_max_images: int = 5000,
                 chunk_size: int = 256,
                 cache_dir: Optional[str] = None,
                 log_interval: float = 30.0) -> None:
        super().__init__(
            runner, dataloader, evaluator, chunk_size=chunk_size, cache_dir=cache_dir, log_interval=log_interval)
        if embed_cache not in ('auto', 'disk', 'memory'):
            raise ValueError(f"embed_cache must be 'auto', 'disk' or 'memory', got {embed_cache!r}")
        if embed_dtype not in ('float32', 'float16'):
            raise ValueError(f"embed_dtype must be 'float32' or 'float16', got {embed_dtype!r}")
        self.knn_file = knn_file
        self.knn_image_num = knn_image_num
        self.pair_rule = MODELS.build(_pair_rule_cfg(pair_rule, topk_bbox_ratio))
        self.roi_feature = MODELS.build(roi_feature)
        self.encode_batch_size = int(encode_batch_size)
        self.embed_cache_mode = embed_cache
        self.embed_dtype = embed_dtype
        self.embed_cache_dir = embed_cache_dir
        self.memory_max_images = int(memory_max_images)
        self.knn_store: Optional[MiningStore] = None
        self.embeddings: Optional[EmbeddingCache] = None
        self._embed_key: Optional[str] = None
        self._filter: Optional[FilterBoxes] = None
        self._crop: Optional[CropBoxes] = None
        self._dataset_fp: Optional[dict] = None
        self.stats: Dict[str, float] = {}

    # ------------------------------------------------------------------ set-up
    def _check_pipeline(self) -> None:
        pipeline = getattr(self.dataset, 'pipeline', None)
        self._filter = _find_transform(pipeline, FilterBoxes)
        self._crop = _find_transform(pipeline, CropBoxes)
        if self._filter is None or self._crop is None:
            raise ValueError('CorrespondenceLoop: the test_dataloader pipeline must contain FilterBoxes and '
                             f'CropBoxes (after the image loading); got {pipeline}')

    def _open_knn(self) -> None:
        store = MiningStore.open(self.knn_file, kind='knn')
        infos = [self.dataset.get_data_info(i) for i in range(len(self.dataset))]
        ann = getattr(self.dataset, 'image_list_cfg', {}).get('ann_file')
        check_image_list(
            store,
            infos,
            store_desc=f'KNN file {store.path}',
            list_desc=f'image list {ann}' if ann else "the data set's image list",
            remedy='mine the neighbours on the same image list (same ann files, same order)')
        k = store.num_neighbours
        if self.knn_image_num is not None and not 0 < self.knn_image_num <= k:
            raise ValueError(f'knn_image_num={self.knn_image_num}, but {store.path} holds '
                             f'{k} neighbours per image')
        self.knn_store = store

    @property
    def num_neighbours(self) -> int:
        assert self.knn_store is not None
        return self.knn_image_num or self.knn_store.num_neighbours

    def mining_params(self) -> dict:
        """The official "info" fields of the output (from the pipeline and the loop)."""
        f = self._filter
        return dict(
            bbox_min_size=f.min_size,
            bbox_max_aspect_ratio=f.max_ratio,
            bbox_max_iou=f.max_iou,
            intra_bbox_num=f.topk,
            knn_image_num=self.num_neighbours,
            knn_bbox_pair_ratio=getattr(self.pair_rule, 'ratio', None))

    def _embed_fingerprint(self) -> dict:
        fp = dict(
            cache_format=1,
            step='correspondence_embed',
            chunk_size=self.chunk_size,
            batch_size=self.batch_size,
            encode_batch_size=self.encode_batch_size,
            embed_dtype=self.embed_dtype,
            encoder=repr(self.roi_feature),
            dataset=self._dataset_fingerprint(),
            checkpoint=self._checkpoint_fingerprint(),
            proposals=_path_identity(getattr(self.dataset, 'proposal_file', '')),
        )
        if self._dataloader_cfg is not None:
            fp['pipeline'] = self._dataloader_cfg.get('dataset', {}).get('pipeline')
        return fp

    def _dataset_fingerprint(self) -> dict:
        # Reads every data info (proposals included): compute it once for both caches.
        if self._dataset_fp is None:
            self._dataset_fp = super()._dataset_fingerprint()
        return self._dataset_fp

    def fingerprint(self) -> dict:
        fp = super().fingerprint()
        fp.update(
            embeddings=self._embed_key,
            knn=_path_identity(self.knn_file),
            knn_image_num=self.num_neighbours,
            pair_rule=repr(self.pair_rule))
        return fp

    def checkpoint_modules(self) -> Tuple[str, ...]:
        return self.roi_feature.modules(self.model)

    def check_model(self) -> None:
        self.roi_feature.check(self.model)

    def before_mining(self) -> None:
        """Phase 1: encode every image's kept boxes once (this rank's chunks), then barrier."""
        self._check_pipeline()
        self._open_knn()
        for metric in getattr(self.evaluator, 'metrics', []):
            if hasattr(metric, 'set_mining_params'):
                metric.set_mining_params(self.mining_params())

        rank, world_size = get_dist_info()
        n = len(self.dataset)
        fp = self._embed_fingerprint()
        self._embed_key = hashlib.sha1(json.dumps(fp, sort_keys=True, default=json_default).encode()).hexdigest()
        mode = self.embed_cache_mode
        if mode == 'auto':
            mode = 'memory' if n <= self.memory_max_images else 'disk'
        cache_dir = None
        if mode == 'disk':
            cache_dir = osp.join(
                self.embed_cache_dir or osp.join(self.runner.work_dir, 'mining_cache', 'correspondence_embed'),
                self._embed_key[:16])
        self.embeddings = EmbeddingCache(
            n, self.chunk_size, cache_dir, dtype=self.embed_dtype, tmp_prefix=f'.tmp_rank{rank}_')
        self.embeddings.remove_stale_tmp()
        if cache_dir is not None and rank == 0:
            atomic_write_json(
                osp.join(cache_dir, 'fingerprint.json'),
                dict(sha1=self._embed_key, **fp),
                sort_keys=True,
                default=json_default)

        mine = [c for c in range(self.embeddings.num_chunks) if c % world_size == rank]
        pending = [c for c in mine if not self.embeddings.is_done(c)]
        print_log(
            f'[{self.step_name}] phase 1 (encode every image\'s boxes once): {n} images, '
            f'{mode} embedding cache{"" if cache_dir is None else " " + cache_dir}; rank '
            f'{rank}/{world_size}: {len(mine) - len(pending)} chunks cached, {len(pending)} '
            'to compute',
            logger='current')
        self.stats.update(encode_forward_s=0.0, crops_encoded=0)
        start = time.perf_counter()
        if pending:
            for c, results in self.stream_chunks(pending):
                self._store_chunk(c, results)
        self.stats['phase1_s'] = time.perf_counter() - start
        barrier()
        self.embeddings.all_gather()
        print_log(
            f'[{self.step_name}] phase 1: {self.stats["crops_encoded"]} boxes encoded in '
            f'{self.stats["phase1_s"]:.1f} s ({self.stats["encode_forward_s"]:.1f} s in the '
            'encoder)',
            logger='current')

    def _store_chunk(self, c: int, results: List[dict]) -> None:
        embeds, boxes, reasons = [], [], []
        for r in results:
            if r.get('skipped', False):
                embeds.append(None)
                boxes.append(None)
                reasons.append(str(r.get('skip_reason', 'skipped')))
            else:
                embeds.append(r['embeddings'])
                boxes.append(r['kept_boxes'])
                reasons.append(None)
        self.embeddings.put_chunk(c, embeds, boxes, reasons)

    def run(self) -> dict:
        """Phase 1 (``before_mining``), phase 2 (the base loop's chunks), then the metric."""
        self.stats = {}
        start = time.perf_counter()
        metrics = super().run()
        self.stats['run_s'] = time.perf_counter() - start
        return metrics

    # ------------------------------------------------------------------ phase 1
    def process_batch(self, data_batch: Any) -> List[dict]:
        """Encode the kept boxes of a batch of images (one forward pass over all their crops)."""
        crops, boxes = _unpack(data_batch)
        counts = [len(c) for c in crops]
        if min(counts, default=1) < 1:
            raise RuntimeError('CorrespondenceLoop: an image has no kept box; FilterBoxes '
                               'always keeps one')
        all_crops = np.concatenate(crops, axis=0)
        if self.model.training:
            self.model.eval()
        start = time.perf_counter()
        emb = self.roi_feature(self.model, all_crops, self.encode_batch_size).cpu().numpy()
        self.stats['encode_forward_s'] += time.perf_counter() - start
        self.stats['crops_encoded'] += len(all_crops)
        out, s = [], 0
        for c, b in zip(counts, boxes):
            out.append(dict(embeddings=emb[s:s + c], kept_boxes=np.asarray(b, dtype=np.int32)))
            s += c
        return out

    # ------------------------------------------------------------------ phase 2
    def process_chunk(self, indices: List[int]) -> List[dict]:
        """Pairs of each query of a chunk with each of its neighbours, from cached embeddings."""
        device = next(self.model.parameters()).device
        k = self.num_neighbours
        cache = self.embeddings
        results = []
        for i in indices:
            knn = self.knn_store.knn(i)[:k].astype(np.int64)
            reason = cache.skip_reason(i)
            if reason is not None:
                results.append(
                    dict(
                        skipped=True,
                        skip_reason=reason,
                        kept_boxes=np.zeros((0, 4), np.int32),
                        knn=knn,
                        pairs=np.zeros((0, 8), np.int32),
                        pair_counts=np.zeros(k, np.int64)))
                continue
            eq, bq = cache.get(i)
            tq = torch.from_numpy(eq).to(device)
            per = []
            for n in knn.tolist():
                en, bn = cache.get(n)
                if len(en) == 0:  # a skipped neighbour has no boxes: no pairs with it
                    per.append(np.zeros((0, 8), np.int32))
                    continue
                per.append(self.pair_rule(tq, torch.from_numpy(en).to(device), bq, bn))
            results.append(
                dict(
                    kept_boxes=bq.astype(np.int32),
                    knn=knn,
                    pairs=np.concatenate(per, axis=0).astype(np.int32),
                    pair_counts=np.array([len(p) for p in per], dtype=np.int64)))
        return results


def _unpack(data_batch: Any):
    """``(crops list, kept boxes list)`` from a pseudo-collated batch (dict of lists) or a list
    of samples."""
    if isinstance(data_batch, dict):
        crops, boxes = data_batch['crops'], data_batch['kept_boxes']
    else:
        crops = [d['crops'] for d in data_batch]
        boxes = [d['kept_boxes'] for d in data_batch]
    crops = [c.numpy() if isinstance(c, torch.Tensor) else np.asarray(c) for c in crops]
    boxes = [b.numpy() if isinstance(b, torch.Tensor) else np.asarray(b) for b in boxes]
    return crops, boxes
