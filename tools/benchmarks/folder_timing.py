"""CPU time per stage of ``orl-pipeline folder`` (the CPU recipe, folder-cpu) per 1,000 images, on one core.

It writes a folder of photo-like JPEGs (640x480 by default, quality 90): a dead-leaves picture, the
classic model of natural-image statistics (occluding shapes at every scale with a 1/f size law,
desaturated colours, shading, 1/f texture and grain), because decoding and selective search depend on
the content (flat synthetic shapes give a fraction of a photo's boxes). As a check it runs selective
search on one real photo (matplotlib's ``sample_data/grace_hopper.jpg``, 512x600) beside a few of the
generated ones and reports boxes and seconds per image of both.

Then it runs the folder-cpu pipeline (configs/orl/folder/*_folder.py, unchanged but for one epoch in
each training stage, no loader workers, and the stage-1 probe hook off) twice, on the first ``N1``
and on all ``N2`` images, every stage in this process pinned to one core with one torch/OpenCV
thread, and takes each stage's CPU time. The per-image cost is the slope between the two runs (the
fixed cost of a stage, its runner set-up, model init and checkpoint writing, is the intercept), so

    CPU s per 1,000 images = (cpu(N2) - cpu(N1)) / (N2 - N1) * 1000

per epoch for the training stages; times the recipe's epochs (30 + 30) for the whole recipe.
Prints a table and writes JSON. ``--quick``: tiny images and runs, for the test.

    python tools/benchmarks/folder_timing.py --out work_dirs/benchmarks/folder_timing.json
"""
import argparse
import contextlib
import importlib.util
import json
import os
import os.path as osp
import platform
import shutil
import tempfile
import time
from typing import Dict, List, Optional

import cv2
import numpy as np
from PIL import Image

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.transforms.loading import decode_image
from orl_plugin.datasets.transforms.selective_search import selective_search
from orl_plugin.pipeline import Pipeline, PipelineOptions, load_config, repo_root, resolve_configs
from orl_plugin.pipeline.stages import STAGE_BY_NAME
from orl_plugin.store import atomic_write_json
from orl_plugin.utils.error_policy import InputError, check_out_file, out_help, run_cli

PRESET = 'folder-cpu'
STAGES = ('stage1', 'knn', 'selective_search', 'correspondence', 'stage3')
REAL_PHOTO = osp.join(osp.dirname(__import__('matplotlib').__file__), 'mpl-data', 'sample_data', 'grace_hopper.jpg')
# The measurement's changes to the recipe: one process, one epoch, no probe (its cost does not grow
# with the folder: 256 images, 7 times in 30 epochs).
COMMON_OPTIONS = [
    'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False', 'stage1:custom_hooks=[]'
]
QUICK_OPTIONS = [
    'stage1:train_dataloader.batch_size=4', 'stage3:train_dataloader.batch_size=4',
    *[f'stage1:train_dataloader.dataset.pipeline.1.transforms.{v}.0.scale=32'
      for v in (0, 1)], *[f'stage3:train_dataloader.dataset.pipeline.1.img_pipelines.{v}.0.scale=32' for v in (0, 1)],
    *[f'stage3:train_dataloader.dataset.pipeline.1.patch_pipelines.{v}.0.size=16' for v in (0, 1)]
]


# ----------------------------------------------------------------------------- photo-like images
def _pink_noise(rng: np.random.Generator, h: int, w: int, alpha: float) -> np.ndarray:
    """Gaussian noise with a ``1/f**alpha`` amplitude spectrum, unit variance."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f**alpha
    spec[0, 0] = 0
    x = np.fft.irfft2(spec, s=(h, w))
    return x / (x.std() + 1e-8)


def dead_leaves(seed: int, w: int = 640, h: int = 480) -> np.ndarray:
    """A photo-like RGB uint8 picture: 120-200 occluding shapes (ellipses, rotated rectangles,
    polygons) with sizes uniform in log scale, each shaded, over 1/f texture and grain."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img[:] = rng.uniform(40, 220, 3) * (1 - t) + rng.uniform(20, 200, 3) * t
    rmin, rmax = 8.0 * min(h, w) / 480, 0.5 * min(h, w)
    radii = np.sort(rmin * (rmax / rmin)**rng.uniform(size=rng.integers(120, 200)))[::-1]
    for r in radii:  # the large ones first: the small ones occlude them
        col = rng.uniform(0, 255, 3)
        col = col * 0.55 + col.mean() * 0.45  # natural colours are not saturated
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        x0, y0 = max(int(cx - 1.6 * r), 0), max(int(cy - 1.6 * r), 0)
        x1, y1 = min(int(cx + 1.6 * r) + 1, w), min(int(cy + 1.6 * r) + 1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        c = (cx - x0, cy - y0)
        kind = rng.integers(3)
        if kind == 0:
            cv2.ellipse(mask, (int(c[0]), int(c[1])), (int(r), int(r * rng.uniform(0.4, 1.0))),
                        float(rng.uniform(0, 180)), 0, 360, 255, -1)
        elif kind == 1:
            size = (2 * r * rng.uniform(0.5, 1.5), 2 * r * rng.uniform(0.5, 1.5))
            cv2.fillPoly(mask, [cv2.boxPoints((c, size, float(rng.uniform(0, 90)))).astype(np.int32)], 255)
        else:
            k = rng.integers(3, 8)
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = r * rng.uniform(0.5, 1.2, k)
            pts = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1)
            cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
        m = mask > 0
        gy, gx = np.mgrid[y0:y1, x0:x1]
        shade = 1 + 0.25 * ((gx - cx) * rng.normal() + (gy - cy) * rng.normal()) / (r + 1)
        img[y0:y1, x0:x1][m] = col[None, :] * np.clip(shade[m], 0.5, 1.5)[:, None]
    tex = np.stack([_pink_noise(rng, h, w, 1.0) for _ in range(3)], -1) * 0.6 + \
        _pink_noise(rng, h, w, 1.0)[..., None] * 0.8
    grain = cv2.GaussianBlur(rng.normal(size=(h, w, 3)).astype(np.float32), (0, 0), 1.2) * 2.5
    rough = np.clip(_pink_noise(rng, h, w, 2.0) * 0.5 + 0.5, 0.05, 1.0)[..., None]
    img += (tex * 22 + grain * 10) * rough
    img = cv2.GaussianBlur(img, (0, 0), 0.8) + rng.normal(0, 2.5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(folder: str, num: int, size: tuple, seed: int = 0) -> List[str]:
    """``num`` photo-like JPEGs (quality 90) under ``folder``, written once."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(num):
        path = osp.join(folder, f'img_{i:05d}.jpg')
        if not osp.isfile(path):
            Image.fromarray(dead_leaves(seed + i, *size)).save(path, quality=90)
        paths.append(path)
    return paths


def search_cost(paths: List[str]) -> Dict[str, float]:
    """Decode + selective search (fast mode, full resolution) of each file: CPU s and boxes per image."""
    cpu, boxes = [], []
    for p in paths:
        with open(p, 'rb') as f:
            content = f.read()
        t0 = time.process_time()
        img = decode_image(content, p)
        boxes.append(len(selective_search(img)))
        cpu.append(time.process_time() - t0)
    return {'images': len(paths), 'cpu_s_per_image': float(np.mean(cpu)), 'boxes_per_image': float(np.mean(boxes))}


# ----------------------------------------------------------------------------- the pipeline, in process
def _tool(script: str):
    spec = importlib.util.spec_from_file_location(f'_orl_tool_{osp.splitext(osp.basename(script))[0]}', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class InProcessPipeline(Pipeline):
    """The pipeline with every stage's tool (tools/train.py, tools/test.py) run in this process: the
    imports are paid once, and this process's CPU time is the stage's."""

    def __init__(self, opts: PipelineOptions) -> None:
        super().__init__(opts)
        self.cpu: Dict[str, float] = {}

    def _run_command(self, cmd: List[str], log_path: str) -> int:
        stage = osp.basename(osp.dirname(log_path))
        tool = _tool(cmd[1])  # [python, tools/<entry>.py, config, ...]
        with open(log_path, 'a') as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            t0 = time.process_time()
            tool.main(cmd[2:])
            self.cpu[stage] = time.process_time() - t0
        return 0


def run_pipeline(data_root: str, work_dir: str, options: List[str]) -> tuple:
    opts = PipelineOptions(
        PRESET,
        work_dir=work_dir,
        data_root=data_root,
        schedule={'stage1': 1, 'stage3': 1},
        cfg_options=options,
        force=True,
        quiet=True)
    pipe = InProcessPipeline(opts)
    summary = pipe.run()
    return pipe.cpu, summary


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument(
        '--num-images',
        type=int,
        nargs=2,
        default=(32, 96),
        metavar=('N1', 'N2'),
        help='the two folder sizes (N1 < N2; 2a needs at least 11)')
    p.add_argument('--img-size', type=int, nargs=2, default=(640, 480), metavar=('W', 'H'))
    p.add_argument('--reference-images', type=int, default=4, help='generated images searched beside the real photo')
    p.add_argument('--work-dir', help='default: a temporary directory, removed afterwards')
    p.add_argument('--out', default='work_dirs/benchmarks/folder_timing.json', metavar='FILE', help=out_help('JSON'))
    p.add_argument(
        '--quick',
        action='store_true',
        help='12 and 16 images of 96x72, batch 4, 32 px views: checks the machinery, measures nothing')
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out = check_out_file(args.out)
    if args.quick:
        # Multiples of the batch: a last batch of 2 images has 1x1 res5 maps of 32 px views, whose BN
        # statistics can blow a 4-step training up into NaN features.
        args.num_images, args.img_size, args.reference_images = (12, 16), (96, 72), 1
    n1, n2 = args.num_images
    if not 11 <= n1 < n2:
        raise InputError(f'--num-images: need 11 <= N1 < N2, got {n1} {n2}')
    import torch
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tmp = None if args.work_dir else tempfile.mkdtemp(prefix='folder_timing_')
    work = args.work_dir or tmp
    try:
        t0 = time.time()
        paths = make_folder(osp.join(work, 'images'), n2, tuple(args.img_size))
        small = osp.join(work, f'images_{n1}')
        os.makedirs(small, exist_ok=True)
        for p in paths[:n1]:
            dst = osp.join(small, osp.basename(p))
            if not osp.exists(dst):
                os.symlink(osp.abspath(p), dst)
        print(
            f'[folder_timing] {n2} images of {args.img_size[0]}x{args.img_size[1]} in {time.time() - t0:.0f} s',
            flush=True)

        reference = {'generated': search_cost(paths[:args.reference_images])}
        if osp.isfile(REAL_PHOTO):
            reference['real_photo'] = dict(search_cost([REAL_PHOTO]), file=REAL_PHOTO)

        options = COMMON_OPTIONS + (QUICK_OPTIONS if args.quick else [])
        cpu, summaries = {}, {}
        for n, root in ((n1, small), (n2, osp.join(work, 'images'))):
            print(f'[folder_timing] the {PRESET} pipeline on {n} images ...', flush=True)
            cpu[n], summaries[n] = run_pipeline(root, osp.join(work, f'run_{n}'), options)
            print(
                f'[folder_timing]   CPU s per stage: {json.dumps({k: round(v, 1) for k, v in cpu[n].items()})}',
                flush=True)

        configs = resolve_configs(PRESET)[1]
        rows = {}
        for stage in STAGES:
            slope = (cpu[n2][stage] - cpu[n1][stage]) / (n2 - n1)
            train = STAGE_BY_NAME[stage].entry == 'train'
            epochs = int(load_config(configs[stage])['train_cfg']['max_epochs']) if train else 1
            rows[stage] = {
                'cpu_s': {str(n1): round(cpu[n1][stage], 2),
                          str(n2): round(cpu[n2][stage], 2)},
                'cpu_s_per_1000_images': round(1000 * slope, 1),  # per epoch for training stages
                'fixed_cpu_s': round(cpu[n1][stage] - n1 * slope, 2),
                'recipe_epochs': epochs if train else None,
                'recipe_cpu_s_per_1000_images': round(1000 * slope * epochs, 1),
            }
        ss_metrics = summaries[n2]['stages']['selective_search']['metrics']
        total = sum(r['recipe_cpu_s_per_1000_images'] for r in rows.values())
        result = {
            'benchmark': 'folder_timing',
            'quick': args.quick,
            'preset': PRESET,
            'configs': {s: osp.relpath(configs[s], repo_root()) for s in STAGES},
            'num_images': [n1, n2],
            'img_size': list(args.img_size),
            'options': options,
            'one_core': True,
            'torch_threads': torch.get_num_threads(),
            'stages': rows,
            'recipe_cpu_s_per_1000_images': round(total, 1),
            'mean_raw_boxes': ss_metrics.get('selective_search/mean_raw_boxes'),
            'mean_kept_boxes': summaries[n2]['stages']['correspondence']['metrics'].get(
                'correspondence/mean_kept_boxes'),
            'reference_search': reference,
            'machine': dict(
                platform=platform.platform(),
                python=platform.python_version(),
                cpu_count=os.cpu_count(),
                load_avg=os.getloadavg()),
        }
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    atomic_write_json(out, result, indent=2)
    lines = [
        f'\nCPU seconds per 1,000 images, one core, {PRESET} ({args.img_size[0]}x{args.img_size[1]} photo-like '
        f'JPEGs; slope between {n1} and {n2} images)',
        '| stage | per 1,000 images (per epoch) | recipe epochs | recipe, per 1,000 images | fixed per run |',
        '|---|---|---|---|---|'
    ]
    for stage, r in rows.items():
        lines.append(f'| {stage} | {r["cpu_s_per_1000_images"]:,.0f} | {r["recipe_epochs"] or "-"} | '
                     f'{r["recipe_cpu_s_per_1000_images"]:,.0f} ({r["recipe_cpu_s_per_1000_images"] / 3600:.2f} h) | '
                     f'{r["fixed_cpu_s"]:.1f} |')
    lines.append(f'| all | | | {total:,.0f} ({total / 3600:.2f} h) | |')
    lines.append('\nselective search (fast, full resolution), decode included, CPU s and boxes per image:')
    for k, v in reference.items():
        lines.append(f'  {k}: {v["cpu_s_per_image"]:.2f} s, {v["boxes_per_image"]:.0f} boxes ({v["images"]} images)')
    lines.append(f'written: {out}')
    print('\n'.join(lines), flush=True)
    return 0


if __name__ == '__main__':
    run_cli(main)
