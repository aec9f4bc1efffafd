"""Throughput of the stage-2b selective-search step, and its overhead over the raw OpenCV call.

Runs, on the same images:
1. the raw call: decode (PIL, as the step) + ``cv2.ximgproc`` selective search (fast mode,
   one OpenCV thread), image after image in this process;
2. the whole step (``Runner.test()`` with ``SelectiveSearchLoop``) with each requested number
   of data-loader workers, from a fresh work dir (nothing cached), store writing included.

Prints images/s and the per-image overhead of the step with 1 worker over the raw call, and
writes them as JSON. Without ``--data-root`` it generates synthetic scenes (640x480, COCO-like
size) in a temporary folder.

    python tools/benchmarks/selective_search_speed.py --num-images 16 --workers 1 2 \
        --out work_dirs/benchmarks/selective_search_speed.json
"""
import argparse
import os
import os.path as osp
import platform
import resource
import tempfile
import time
from typing import List, Optional

import cv2
import mmcv
import numpy as np
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.datasets.transforms.selective_search import selective_search
from orl_plugin.store import MiningStore, atomic_write_json
from orl_plugin.utils.error_policy import check_out_file, out_help, run_cli

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(ROOT, 'configs/orl/stage2/selective-search_synthetic.py')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default=DEFAULT_CONFIG, help='selective-search step config')
    p.add_argument('--data-root', help='COCO-format data root (default: synthetic scenes)')
    p.add_argument('--ann-file', default='annotations/instances_train.json')
    p.add_argument('--img-prefix', default='images/')
    p.add_argument('--num-images', type=int, default=16, help='synthetic images to generate')
    p.add_argument('--img-size', type=int, nargs=2, default=(640, 480), metavar=('W', 'H'))
    p.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    p.add_argument('--chunk-size', type=int, default=8)
    p.add_argument(
        '--out', default='work_dirs/benchmarks/selective_search_speed.json', metavar='FILE', help=out_help('JSON'))
    return p.parse_args(argv)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (data-loader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_raw(img_paths: list) -> dict:
    """Decode + selective search image after image; returns per-image seconds."""
    cv2.setNumThreads(1)
    decode, search, boxes = [], [], []
    cpu0 = _cpu_seconds()
    for path in img_paths:
        t0 = time.perf_counter()
        with open(path, 'rb') as f:
            img = mmcv.imfrombytes(f.read(), backend='pillow')
        t1 = time.perf_counter()
        b = selective_search(img, 'fast')
        t2 = time.perf_counter()
        decode.append(t1 - t0)
        search.append(t2 - t1)
        boxes.append(len(b))
    return dict(
        decode_s=float(np.mean(decode)),
        search_s=float(np.mean(search)),
        total_s=float(np.sum(decode) + np.sum(search)),
        cpu_s_per_image=(_cpu_seconds() - cpu0) / len(img_paths),
        mean_boxes=float(np.mean(boxes)))


def time_step(config: str, data_root: str, ann_file: str, img_prefix: str, workers: int, chunk_size: int,
              tmp: str) -> dict:
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({
        'test_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.ann_file': ann_file,
        'test_dataloader.dataset.data_prefix': dict(img_path=img_prefix),
        'test_dataloader.num_workers': workers,
        'test_dataloader.persistent_workers': False,
        'test_cfg.chunk_size': chunk_size,
        'test_evaluator.out_file': osp.join(tmp, f'ss_w{workers}.orlstore'),
    })
    cfg.work_dir = osp.join(tmp, f'work_w{workers}')  # fresh: nothing cached
    cfg.experiment_name = f'ss_speed_w{workers}'
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    n = len(runner.test_dataloader.dataset)
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    runner.test()
    elapsed = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0  # main process + data-loader workers (joined by now)
    return dict(workers=workers, images=n, seconds=elapsed, images_per_s=n / elapsed, cpu_s_per_image=cpu / n)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out = check_out_file(args.out)
    with tempfile.TemporaryDirectory(prefix='ss_speed_') as tmp:
        data_root = args.data_root
        if data_root is None:
            data_root = osp.join(tmp, 'scenes')
            # all images in the train split (val_fraction 0)
            make_synthetic_scenes(data_root, args.num_images, seed=0, img_size=tuple(args.img_size), val_fraction=0.0)
        cfg_ds = dict(data_root=data_root, ann_file=args.ann_file, img_prefix=args.img_prefix)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            ds = DATASETS.build(
                dict(
                    type='SceneImageDataset',
                    data_root=data_root,
                    ann_file=args.ann_file,
                    data_prefix=dict(img_path=args.img_prefix)))
        paths = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
        # Raw calls before, between and after the step runs (median counts): the machine's speed
        # drifts over minutes, and a raw figure taken at one end only would charge the drift to
        # the step.
        raws, runs = [time_raw(paths)], []
        for w in args.workers:
            runs.append(time_step(args.config, workers=w, chunk_size=args.chunk_size, tmp=tmp, **cfg_ds))
            raws.append(time_raw(paths))
        store = MiningStore.open(osp.join(tmp, f'ss_w{args.workers[0]}.orlstore'))
        assert store.num_images == len(paths)
        raw = sorted(raws, key=lambda r: r['total_s'])[len(raws) // 2]
        raw = dict(
            raw, runs_total_s=[r['total_s'] for r in raws], runs_cpu_s_per_image=[r['cpu_s_per_image'] for r in raws])

    n = len(paths)
    raw_ips = n / raw['total_s']
    result = dict(
        images=n,
        image_size=list(args.img_size) if args.data_root is None else None,
        data_root=args.data_root or 'synthetic',
        cpu_count=os.cpu_count(),
        machine=platform.machine(),
        opencv=cv2.__version__,
        raw=dict(raw, images_per_s=raw_ips),
        step=runs)
    one = [r for r in runs if r['workers'] == 1]
    if one:
        per_image = one[0]['seconds'] / n
        result['overhead_per_image_s_vs_decode_and_search'] = per_image - raw['total_s'] / n
        result['overhead_per_image_s_vs_search_only'] = per_image - raw['search_s']
        result['overhead_fraction_vs_decode_and_search'] = per_image / (raw['total_s'] / n) - 1
        # CPU seconds are less sensitive than wall time to other jobs on a shared machine.
        result['cpu_overhead_per_image_s'] = one[0]['cpu_s_per_image'] - raw['cpu_s_per_image']
    result['load_average_1m_at_end'] = os.getloadavg()[0]

    print(f'{n} images, {raw["mean_boxes"]:.0f} raw boxes per image on average')
    print(f'raw (decode {raw["decode_s"] * 1e3:.1f} ms + search {raw["search_s"] * 1e3:.1f} ms '
          f'per image, 1 process): {raw_ips:.3f} images/s')
    print(f'raw CPU time: {raw["cpu_s_per_image"] * 1e3:.1f} ms per image (median of '
          f'{len(raw["runs_total_s"])} raw passes interleaved with the step runs: '
          f'{", ".join(f"{t / n:.2f}" for t in raw["runs_total_s"])} s per image)')
    for r in runs:
        print(f'step, {r["workers"]} worker(s): {r["images_per_s"]:.3f} images/s '
              f'({r["seconds"]:.2f} s; CPU {r["cpu_s_per_image"] * 1e3:.1f} ms per image)')
    if one:
        print(f'step overhead with 1 worker: '
              f'{result["overhead_per_image_s_vs_decode_and_search"] * 1e3:+.1f} ms per image '
              f'({result["overhead_fraction_vs_decode_and_search"] * 100:+.1f}%) over decode + '
              f'search; CPU {result["cpu_overhead_per_image_s"] * 1e3:+.1f} ms per image')
    print(f'load average (1 min) at the end: {result["load_average_1m_at_end"]:.2f} on '
          f'{os.cpu_count()} cores')
    atomic_write_json(out, result, indent=2)
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    run_cli(main)
