"""Stage 2c speed: encode every image's boxes once (this project) vs the official per-pair way.

On the same synthetic scenes, the same raw selective-search boxes, the same KNN lists and the
same stage-1 encoder, it runs

- this project's 2c: ``Runner.test()`` of the synthetic correspondence config
  (``CorrespondenceLoop`` + ``CorrespondenceMetric``: load, filter, crop, encode each image's
  boxes once in batches, match from the cached embeddings, write the store);
- the official per-pair procedure, written out here as the released ORL code does it: for
  every query, load and filter its boxes and those of its k neighbours, crop them all, encode
  the query's boxes and then, for every neighbour, the neighbour's boxes again, then cosine
  similarity and ``torch.topk`` of the flattened matrix. ``--official-batch box`` encodes one
  box per forward (batch 1); ``image`` encodes all boxes of one image per forward, as the
  released ``Correspondence.forward_test`` does; ``both`` runs the two;
- a pure batched forward of the encoder over exactly the crops this project encodes.

It reports whether the pairs are identical (per neighbour list, and how many pairs), the wall
clock speed-up, and total 2c time / pure forward time; prints a table and writes JSON.

The encoder is the ResNet-18 BYOL of the synthetic configs: ``--checkpoint`` (e.g. a stage-1
checkpoint), or by default a seeded random initialisation saved to ``--work-dir`` (the
timings and the pair identity do not depend on the weights being trained).

Example (a few minutes on an idle 2-core CPU)::

    python tools/benchmarks/mining_speed.py --num-images 12 --out work_dirs/benchmarks/mining_speed.json
"""
import argparse
import copy
import json
import os
import os.path as osp
import time
from typing import List, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

from orl_plugin.utils.error_policy import InputError, check_out_file, out_help, run_cli

CONFIG = 'configs/orl/stage2/correspondence_byol-resnet18_1xb64_synthetic.py'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--num-images', type=int, default=12, help='synthetic images (>= k + 1)')
    p.add_argument('--img-size', type=int, default=256, help='synthetic image side (px)')
    p.add_argument('--config', default=CONFIG, help='stage-2c config (model, pipeline, loop)')
    p.add_argument(
        '--checkpoint', default=None, help='stage-1 checkpoint; default: seeded random init, saved to --work-dir')
    p.add_argument('--k', type=int, default=10, help='neighbours per image')
    p.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch CPU threads for every procedure (1 keeps timings fair on a '
        'shared machine: oversubscribed OpenMP threads slow batch-1 forwards most)')
    p.add_argument(
        '--repeat',
        type=int,
        default=3,
        help="runs of this project's 2c and of the pure forward (the fastest "
        'counts; the slow official procedure runs once)')
    p.add_argument(
        '--official-batch',
        choices=['box', 'image', 'both', 'none'],
        default='box',
        help="official encoder batching: 'box' = one box per forward (batch 1), "
        "'image' = one image's boxes per forward (the released code); 'none' skips "
        'the official procedure (to measure the total/forward ratio on more images)')
    p.add_argument(
        '--workers',
        type=int,
        default=None,
        help="data-loader workers of this project's 2c (default: the config's); "
        'workers crop while the main process encodes')
    p.add_argument('--out', default='work_dirs/benchmarks/mining_speed.json', metavar='FILE', help=out_help('JSON'))
    p.add_argument(
        '--work-dir',
        help='the scenes, boxes, neighbours, checkpoint and runs (default: beside --out, its name without .json)')
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------- inputs
def make_inputs(args, root: str, cfg: Config) -> dict:
    """Synthetic images, raw selective-search boxes and KNN lists (cached under root)."""
    from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
    from orl_plugin.datasets.transforms.selective_search import selective_search
    from orl_plugin.store import write_knn_store, write_selective_search_store

    ann = osp.join(root, 'annotations', 'instances.json')
    if not osp.exists(ann):
        make_synthetic_scenes(root, args.num_images, seed=args.seed, img_size=(args.img_size, args.img_size))
    with open(ann) as f:
        images = json.load(f)['images']
    if len(images) != args.num_images:
        raise InputError(f'{root} holds {len(images)} images, not {args.num_images}: use '
                         'another --work-dir or delete it')
    paths = [osp.join(root, 'images', im['file_name']) for im in images]
    names = [im['file_name'] for im in images]
    ids = [im['id'] for im in images]
    ss_path = osp.join(root, 'orl', 'selective_search.orlstore')
    if not osp.exists(ss_path):
        import cv2
        cv2.setNumThreads(1)
        boxes = [selective_search(cv2.imread(p)) for p in paths]
        write_selective_search_store(ss_path, boxes, file_names=names, image_ids=ids)
    knn_path = osp.join(root, 'orl', 'knn.orlstore')
    if not osp.exists(knn_path):
        # Any fixed neighbour lists serve the benchmark; random ones avoid depending on 2a.
        rng = np.random.default_rng(args.seed)
        n = len(paths)
        knn = np.stack([rng.choice(np.delete(np.arange(n), i), args.k, replace=False) for i in range(n)])
        write_knn_store(knn_path, knn, file_names=names, image_ids=ids)
    return dict(paths=paths, names=names, ss_path=ss_path, knn_path=knn_path, ann=ann)


def make_checkpoint(args, cfg: Config, work_root: str) -> tuple:
    if args.checkpoint:
        return args.checkpoint, f'given: {args.checkpoint}'
    from mmpretrain.registry import MODELS

    from orl_plugin.store import atomic_open
    path = osp.join(work_root, f'random_init_seed{args.seed}.pth')
    if not osp.exists(path):
        torch.manual_seed(args.seed)
        model = MODELS.build(cfg.model)
        model.init_weights()
        with atomic_open(path, 'wb') as f:
            torch.save(dict(state_dict=model.state_dict(), meta=dict(note='random init')), f)
    return path, f'random initialisation (torch seed {args.seed}), saved to {path}'


# ------------------------------------------------------------------------------- official
def official_per_pair(model, paths, ss_store, knn_store, k, filter_kw, crop_size, batch_mode):
    """The released ORL procedure: per query, re-encode every neighbour's boxes."""
    from orl_plugin.datasets.transforms.box_filter import filter_boxes
    from orl_plugin.datasets.transforms.crop_boxes import crop_boxes
    from orl_plugin.models import RoIFeature
    encode_crops = RoIFeature(pad_single=False)  # the released code pads nothing

    def sample(i):
        # CorrespondenceDataset.__getitem__: read the image (PIL, RGB), filter, crop.
        img = np.asarray(Image.open(paths[i]).convert('RGB'))[..., ::-1]  # BGR like mmcv
        boxes = filter_boxes(ss_store.boxes(i), **filter_kw)
        return boxes, crop_boxes(img, boxes, crop_size)

    def encode(crops):
        bs = 1 if batch_mode == 'box' else len(crops)
        return encode_crops(model, crops, batch_size=bs)

    pairs, forwards, encoded, smaps = [], 0, 0, {}
    start = time.perf_counter()
    with torch.no_grad():
        for q in range(len(paths)):
            if q and q % max(1, len(paths) // 6) == 0:
                el = time.perf_counter() - start
                print(
                    f'  official ({batch_mode}): {q}/{len(paths)} queries, {el:.0f} s, '
                    f'ETA {el / q * (len(paths) - q):.0f} s',
                    flush=True)
            bq, cq = sample(q)
            nbrs = [sample(int(n)) for n in knn_store.knn(q)[:k]]
            fq = encode(cq)
            forwards += len(cq) if batch_mode == 'box' else 1
            encoded += len(cq)
            row = []
            for j, (bn, cn) in enumerate(nbrs):
                fn = encode(cn)
                forwards += len(cn) if batch_mode == 'box' else 1
                encoded += len(cn)
                smap = torch.mm(fq, fn.t())
                topk_num = int(0.1 * smap.size(0))
                _, top = torch.topk(smap.flatten(), topk_num if topk_num > 0 else 1)
                qi, ni = (top // smap.size(1)).numpy(), (top % smap.size(1)).numpy()
                row.append(np.concatenate([bq[qi], bn[ni]], axis=1).astype(np.int32))
                smaps[q, j] = (smap.numpy(), bq, bn)
            pairs.append(row)
    return pairs, forwards, encoded, smaps


def _sims(pairs, smap, bq, bn):
    """Similarities (in the official matrix) of the pairs' box indices."""
    iq = {tuple(b): k for k, b in enumerate(bq.tolist())}
    inn = {tuple(b): k for k, b in enumerate(bn.tolist())}
    return np.array([smap[iq[tuple(p[:4])], inn[tuple(p[4:])]] for p in pairs.tolist()])


def compare(ours, official, smaps, tie_tol=1e-5):
    """Identical neighbour lists and pairs (same boxes, same order); for a list that differs,
    whether the official similarities of the two lists agree within ``tie_tol`` (a near tie
    resolved the other way by float rounding) or not (a real difference)."""
    cells = pairs_total = cells_same = pairs_same = near_ties = 0
    worst = 0.0
    for i, row in enumerate(official):
        for j, p in enumerate(row):
            o = ours.pairs(i, j)
            cells += 1
            pairs_total += len(p)
            if o.shape == p.shape and np.array_equal(o, p):
                cells_same += 1
                pairs_same += len(p)
                continue
            m = min(len(o), len(p))
            pairs_same += int((o[:m] == p[:m]).all(axis=1).sum())
            smap, bq, bn = smaps[i, j]
            gap = float(np.abs(_sims(o, smap, bq, bn) - _sims(p, smap, bq, bn)).max()) \
                if len(o) == len(p) else float('inf')
            worst = max(worst, gap)
            near_ties += gap <= tie_tol
    return dict(
        identical=cells_same == cells,
        lists_identical=cells_same,
        lists=cells,
        pairs_identical=pairs_same,
        pairs=pairs_total,
        differing_lists_explained_by_near_ties=near_ties,
        max_similarity_gap_in_differing_lists=worst)


# ------------------------------------------------------------------------------- main
def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out = check_out_file(args.out)
    torch.set_num_threads(args.threads)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mining_speed', log_level='WARNING')  # quiet model building
    import orl_plugin  # noqa: F401  (registers everything)
    from orl_plugin.datasets.transforms.box_filter import filter_boxes
    from orl_plugin.datasets.transforms.crop_boxes import crop_boxes
    from orl_plugin.models import RoIFeature
    from orl_plugin.store import MiningStore, atomic_write_json

    work_root = osp.abspath(args.work_dir or osp.splitext(out)[0])
    root = osp.join(work_root, f'scenes_{args.num_images}_{args.img_size}_seed{args.seed}')
    os.makedirs(work_root, exist_ok=True)
    base_cfg = Config.fromfile(args.config)
    t0 = time.perf_counter()
    inputs = make_inputs(args, root, base_cfg)
    prep_s = time.perf_counter() - t0
    ckpt, ckpt_note = make_checkpoint(args, base_cfg, work_root)
    out_store = osp.join(work_root, 'correspondence.orlstore')

    def project_runner(run: int) -> Runner:
        """This project's 2c, as ``tools/test.py CONFIG CHECKPOINT`` runs it."""
        cfg = copy.deepcopy(base_cfg)
        cfg.work_dir = osp.join(work_root, 'work_dir')
        cfg.experiment_name = f'mining_speed_{run}_{time.time_ns()}'
        cfg.load_from = ckpt
        ds = cfg.test_dataloader.dataset
        ds.data_root = root + '/'
        ds.ann_file = 'annotations/instances.json'
        ds.proposal_file = 'orl/selective_search.orlstore'
        cfg.test_cfg.knn_file = inputs['knn_path']
        cfg.test_cfg.knn_image_num = args.k
        cfg.test_cfg.embed_cache = 'memory'
        # a fresh pair cache for every run, so each run is timed from scratch
        cfg.test_cfg.cache_dir = osp.join(work_root, 'work_dir', f'pairs_cache_{time.time_ns()}')
        cfg.test_evaluator.out_file = out_store
        if args.workers is not None:
            cfg.test_dataloader.num_workers = args.workers
        cfg.log_level = 'WARNING'
        return Runner.from_cfg(cfg)

    # A probe runner gives the encoder (with the checkpoint) and the pipeline settings; every
    # timed run below gets a fresh runner, so each pays the same start-up.
    probe = project_runner(-1)
    probe.load_checkpoint(ckpt, map_location='cpu')
    model = probe.model.eval()
    pipeline = probe.test_loop.dataset.pipeline
    from orl_plugin.datasets.transforms import CropBoxes, FilterBoxes
    filt = next(t for t in pipeline.transforms if isinstance(t, FilterBoxes))
    crop_size = next(t for t in pipeline.transforms if isinstance(t, CropBoxes)).size
    filter_kw = dict(min_size=filt.min_size, max_ratio=filt.max_ratio, max_iou=filt.max_iou, topk=filt.topk)
    enc_bs = base_cfg.test_cfg.encode_batch_size

    # warm-up of both batch shapes (oneDNN builds kernels on first use), outside all timings
    dummy = np.zeros((enc_bs, crop_size, crop_size, 3), np.uint8)
    with torch.no_grad():
        RoIFeature()(model, dummy, enc_bs)
        RoIFeature(pad_single=False)(model, dummy[:1], 1)

    # pure batched forward of the encoder over the same crops (same batch size)
    ss = MiningStore.open(inputs['ss_path'])
    knn = MiningStore.open(inputs['knn_path'])
    crops = []
    for i, p in enumerate(inputs['paths']):
        img = np.asarray(Image.open(p).convert('RGB'))[..., ::-1]
        crops.append(crop_boxes(img, filter_boxes(ss.boxes(i), **filter_kw), crop_size))
    crops = np.concatenate(crops)

    # Interleaved runs (the fastest of each counts), so that a load change on a shared machine
    # hits both measurements alike.
    import shutil
    ours_runs, loop_runs, inrun_fwd, pure_runs, stats = [], [], [], [], None
    for run in range(args.repeat):
        r = project_runner(run)
        t0 = time.perf_counter()
        r.test()
        ours_runs.append(time.perf_counter() - t0)
        stats = dict(r.test_loop.stats)
        loop_runs.append(stats['run_s'])
        inrun_fwd.append(stats['encode_forward_s'])
        shutil.rmtree(r.cfg.test_cfg.cache_dir, ignore_errors=True)
        with torch.no_grad():
            t0 = time.perf_counter()
            RoIFeature()(model, crops, enc_bs)
            pure_runs.append(time.perf_counter() - t0)
    best = int(np.argmin(ours_runs))
    ours_s, loop_s, pure_s = ours_runs[best], loop_runs[best], min(pure_runs)
    ours = MiningStore.open(out_store)
    print(
        f'this project: {ours_s:.2f} s (runs {[round(t, 2) for t in ours_runs]}), pure '
        f'forward {pure_s:.2f} s (runs {[round(t, 2) for t in pure_runs]}); official '
        'per-pair procedure next',
        flush=True)

    modes = {'both': ['box', 'image'], 'none': []}.get(args.official_batch, [args.official_batch])
    official = {}
    for mode in modes:
        t0 = time.perf_counter()
        pairs, forwards, encoded, smaps = official_per_pair(model, inputs['paths'], ss, knn, args.k, filter_kw,
                                                            crop_size, mode)
        official[mode] = dict(
            seconds=time.perf_counter() - t0, forwards=forwards, crops_encoded=encoded, **compare(ours, pairs, smaps))
        official[mode]['speedup'] = official[mode]['seconds'] / ours_s

    n = len(inputs['paths'])
    result = dict(
        num_images=n,
        k=args.k,
        img_size=args.img_size,
        crop_size=crop_size,
        kept_boxes=int(len(crops)),
        mean_kept_boxes=len(crops) / n,
        encode_batch_size=enc_bs,
        checkpoint=ckpt_note,
        loader_workers=probe.cfg.test_dataloader.num_workers if args.workers is None else args.workers,
        device=str(next(model.parameters()).device),
        torch_threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        load_average=list(os.getloadavg()),
        ours_seconds=ours_s,
        ours_runs_seconds=ours_runs,
        ours_loop_seconds=loop_s,
        ours_loop_runs_seconds=loop_runs,
        ours_in_run_forward_seconds=inrun_fwd[best],
        ours_crops_encoded=int(stats['crops_encoded']),
        pure_forward_seconds=pure_s,
        pure_forward_runs_seconds=pure_runs,
        ours_over_pure_forward=ours_s / pure_s,
        loop_over_pure_forward=loop_s / pure_s,
        loop_over_in_run_forward=loop_s / inrun_fwd[best],
        official=official,
        input_preparation_seconds=prep_s)

    rows = [('this project (encode once, batched)', f'{ours_s:.2f}', '1.00x', f'{result["ours_crops_encoded"]} crops',
             '-')]
    for mode, r in official.items():
        same = 'yes' if r['identical'] else 'NO'
        rows.append((f'official per-pair, {"batch 1" if mode == "box" else "batch = 1 image"}', f'{r["seconds"]:.2f}',
                     f'{r["speedup"]:.2f}x', f'{r["crops_encoded"]} crops',
                     f'{same} ({r["pairs_identical"]}/{r["pairs"]} pairs, '
                     f'{r["lists_identical"]}/{r["lists"]} lists)'))
    rows.append(('pure batched encoder forward', f'{pure_s:.2f}', '-', f'{len(crops)} crops', '-'))
    head = ('procedure', 'seconds', 'speed-up', 'encoded', 'pairs identical to ours')
    widths = [max(len(str(r[c])) for r in rows + [head]) for c in range(5)]
    line = '  '.join('{:<%d}' % w for w in widths)
    print(f'\nStage 2c on {n} synthetic {args.img_size}px images, k={args.k}, '
          f'{len(crops) / n:.1f} kept boxes/image, {crop_size}px crops, '
          f'{args.threads} torch thread(s), {result["loader_workers"]} loader worker(s), '
          f'load average {os.getloadavg()[0]:.1f}\n'
          f'checkpoint: {ckpt_note}')
    print(line.format(*head))
    for r in rows:
        print(line.format(*r))
    for mode, r in official.items():
        if not r['identical']:
            print(f'official ({mode}): {r["lists"] - r["lists_identical"]} lists differ; '
                  f'{r["differing_lists_explained_by_near_ties"]} of them are near ties '
                  f'(official similarities within 1e-5; largest gap '
                  f'{r["max_similarity_gap_in_differing_lists"]:.2e})')
    print(f'total 2c time / pure batched forward over the same crops: '
          f'{ours_s / pure_s:.3f} (target <= 1.25)\n'
          f'  of which mmengine Runner.test() start-up (config dump, data set build, checkpoint '
          f'load): {ours_s - loop_s:.2f} s; the 2c loop alone (load, filter, crop, encode, '
          f'match, write): {loop_s:.2f} s = {loop_s / pure_s:.3f} x the pure forward '
          f'({loop_s / inrun_fwd[best]:.3f} x the forward time inside the same run)')
    atomic_write_json(out, result)
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    run_cli(main)
