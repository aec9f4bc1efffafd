"""What the online COCO object probe (``CocoObjectProbeHook``) costs, as a share of one epoch's time.

Two measurements on the CPU, in one run:

1. ``side by side``: one epoch of a training config (default: the CPU stage-1 BYOL config on the
   synthetic scenes, ``data/synthetic_scenes/``, 1,600 training images) with the probe attached at
   interval 1, on the held-out split's annotation file (``instances_val.json``, its objects capped
   per class as the hook does). Timed in the same process: the epoch's iterations, each probe's
   forward and kNN, and the one-off reading and cropping of the probe's objects.
2. ``COCO scale``: the COCO stage-1 model (``configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py``:
   ResNet-50, two 224 px views; BN instead of SyncBN in one process) timed per training image
   (``train_step`` on random views, fp32) and per probe crop (96 px, eval mode), and both scaled to a
   COCO epoch: 118,287 images on ``--gpus`` ranks, against the probe's at most 80 x ``max_per_class``
   crops on one rank (the probe runs on the main process while the other ranks wait). Stage 3 costs
   more per image (two more patch views per branch), so stage 1 is the worst case.

Printed: a table of the probe's share of the epoch time at interval 1 and the smallest interval that
keeps it <= 2 %; written: the same as JSON (``--out``).

    python tools/benchmarks/online_probe_cost.py --out work_dirs/benchmarks/online_probe_cost.json
    python tools/benchmarks/online_probe_cost.py --quick     # 2 iterations and 2 probes: a smoke test
"""
import argparse
import math
import os
import os.path as osp
import platform
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

os.environ.setdefault('OMP_NUM_THREADS', '1')

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from orl_plugin.utils.atomic import atomic_write_json  # noqa: E402
from orl_plugin.utils.error_policy import InputError, check_out_file, out_help, run_cli  # noqa: E402

CPU_CONFIG = 'configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py'
COCO_CONFIG = 'configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py'
COCO_TRAIN_IMAGES = 118287
COCO_CLASSES = 80
BUDGET = 0.02  # the probe's share of the training time at the default interval


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=CPU_CONFIG, help=f'training config of the side-by-side epoch ({CPU_CONFIG})')
    p.add_argument('--data-root', default='data/synthetic_scenes/', help='its data root (synthetic scenes)')
    p.add_argument('--probe-ann', default='annotations/instances_val.json', help='probe file, under --data-root')
    p.add_argument('--probe-img-prefix', default='images/', help='probe images, under --data-root')
    p.add_argument('--max-per-class', type=int, default=25, help="the probe's cap per class (the hook's default)")
    p.add_argument('--crop-size', type=int, default=96, help="the probe's crop size (the hook's default)")
    p.add_argument('--gpus', type=int, default=8, help='ranks of the COCO run the scaled figure assumes')
    p.add_argument('--coco-batch', type=int, default=8, help='images per timed COCO-scale training step')
    p.add_argument('--coco-steps', type=int, default=3, help='timed COCO-scale training steps (after one warm-up)')
    p.add_argument('--quick', action='store_true', help='an epoch of 2 batches, 2 COCO-scale steps (smoke test)')
    p.add_argument('--out', metavar='FILE', help=out_help('JSON; without --out the results are only printed'))
    return p.parse_args(argv)


class _Timer(Hook):
    """Times the epoch's iterations (data loading included) apart from the hooks that follow them."""

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.iters = 0

    def before_train_epoch(self, runner: Any) -> None:
        self.start = time.perf_counter()

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self.end = time.perf_counter()
        self.iters += 1


def _timed(fn, log: List[float]):

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            log.append(time.perf_counter() - t0)

    return wrapper


def side_by_side(args: argparse.Namespace, work_dir: str) -> Dict[str, Any]:
    """One epoch of ``args.config`` with the probe at interval 1, in one process."""
    from mmengine.runner import Runner

    from orl_plugin.engine.hooks import CocoObjectProbeHook
    ann = osp.join(args.data_root, args.probe_ann)
    if not osp.isfile(ann):
        raise InputError(f'no probe annotation file {ann} (make the synthetic scenes with '
                         'tools/data/make_synthetic_scenes.py --out data/synthetic_scenes --num-images 2000)')
    cfg = Config.fromfile(osp.join(ROOT, args.config) if not osp.isabs(args.config) else args.config)
    cfg.work_dir = work_dir
    cfg.train_cfg.max_epochs = 1
    cfg.train_dataloader.dataset.data_root = args.data_root
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1000)  # no saving in the timing
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    cfg.custom_hooks = []
    cfg.param_scheduler = []
    if args.quick:  # two batches
        cfg.train_dataloader.dataset.indices = 2 * cfg.train_dataloader.batch_size
    runner = Runner.from_cfg(cfg)
    timer = _Timer()
    probe = CocoObjectProbeHook(
        dataset=dict(
            type='SceneImageDataset',
            data_root=args.data_root,
            ann_file=args.probe_ann,
            data_prefix=dict(img_path=args.probe_img_prefix)),
        interval=1,
        max_per_class=args.max_per_class,
        crop_size=args.crop_size)
    prepare_s: List[float] = []
    probe_s: List[float] = []
    probe.prepare = _timed(probe.prepare, prepare_s)
    probe.measure = _timed(probe.measure, probe_s)
    runner.register_hook(timer)
    runner.register_hook(probe)
    t0 = time.perf_counter()
    runner.train()
    epoch_s = timer.end - timer.start
    data = probe._data
    return dict(
        config=args.config,
        train_images=len(runner.train_dataloader.dataset),
        iterations=timer.iters,
        epoch_s=epoch_s,
        probe_crops=int(len(data[0])) if data is not None else 0,
        probe_s=float(np.mean(probe_s)),
        probe_runs=len(probe_s),
        prepare_s=float(prepare_s[0]) if prepare_s else float('nan'),
        wall_s=time.perf_counter() - t0)


def coco_scale(args: argparse.Namespace) -> Dict[str, Any]:
    """Per-image training and per-crop probe times of the COCO stage-1 model, scaled to a COCO epoch."""
    from mmengine.logging import MessageHub
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    from orl_plugin.evaluation.object_probe import encode_in_eval_mode
    cfg = Config.fromfile(osp.join(ROOT, COCO_CONFIG))
    MessageHub.get_current_instance().update_info('max_iters', 1000)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
        model.init_weights()
        optim = build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=cfg.optim_wrapper.optimizer))
    model.train()
    batch, steps = args.coco_batch, (2 if args.quick else args.coco_steps)
    g = torch.Generator().manual_seed(0)
    data = dict(
        inputs=[torch.randint(0, 256, (batch, 3, 224, 224), generator=g, dtype=torch.uint8) for _ in range(2)],
        data_samples=[DataSample() for _ in range(batch)])
    model.train_step(data, optim)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_step(data, optim)
    per_image = (time.perf_counter() - t0) / (steps * batch)
    crops = np.random.default_rng(0).integers(
        0, 256, (64 if args.quick else 256, args.crop_size, args.crop_size, 3), dtype=np.uint8)
    encode_in_eval_mode(model, crops[:8])  # warm-up
    t0 = time.perf_counter()
    encode_in_eval_mode(model, crops)
    per_crop = (time.perf_counter() - t0) / len(crops)
    probe_crops = COCO_CLASSES * args.max_per_class
    epoch_s = COCO_TRAIN_IMAGES * per_image / args.gpus  # the ranks share the epoch
    return dict(
        config=COCO_CONFIG,
        train_images=COCO_TRAIN_IMAGES,
        gpus=args.gpus,
        per_image_train_s=per_image,
        per_crop_probe_s=per_crop,
        epoch_s=epoch_s,
        probe_crops=probe_crops,
        probe_s=probe_crops * per_crop)


def _share(row: Dict[str, Any]) -> None:
    row['share_at_interval_1'] = row['probe_s'] / row['epoch_s']
    row['interval_for_budget'] = max(1, math.ceil(row['share_at_interval_1'] / BUDGET))


def table(result: Dict[str, Any]) -> str:
    lines = [
        '| measurement | training images / epoch | epoch (s) | probe crops | probe (s) | probe / epoch at interval 1 '
        '| smallest interval for <= 2 % |', '|---|---|---|---|---|---|---|'
    ]
    names = dict(
        side_by_side='side by side: one epoch of the CPU config, probe attached (measured)',
        coco_scale=f'COCO stage 1, ResNet-50, 224 px views, {result.get("coco_scale", {}).get("gpus", "-")} ranks '
        '(per-image and per-crop times measured, scaled)')
    for key, name in names.items():
        row = result.get(key)
        if not row:
            continue
        lines.append(f'| {name} | {row["train_images"]:,} | {row["epoch_s"]:.1f} | {row["probe_crops"]:,} | '
                     f'{row["probe_s"]:.2f} | {100 * row["share_at_interval_1"]:.2f} % | '
                     f'{row["interval_for_budget"]} |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out = check_out_file(args.out) if args.out is not None else None
    torch.set_num_threads(1)
    import orl_plugin  # noqa: F401  (registers the components)
    result: Dict[str, Any] = dict(
        args=vars(args),
        machine=dict(
            cpus=os.cpu_count(),
            loadavg_start=list(os.getloadavg()),
            python=platform.python_version(),
            torch=torch.__version__))
    with tempfile.TemporaryDirectory() as work_dir:
        result['side_by_side'] = side_by_side(args, work_dir)
    _share(result['side_by_side'])
    print(f'side by side done: {result["side_by_side"]}', flush=True)
    result['coco_scale'] = coco_scale(args)
    _share(result['coco_scale'])
    result['machine']['loadavg_end'] = list(os.getloadavg())
    result['table'] = table(result)
    print(result['table'])
    s = result['side_by_side']
    load = result['machine']
    print(f'\none-off, at the first probe: reading and cropping the {s["probe_crops"]} objects took '
          f'{s["prepare_s"]:.1f} s; load average {load["loadavg_start"][0]:.1f} at the start, '
          f'{load["loadavg_end"][0]:.1f} at the end ({load["cpus"]} CPUs)')
    if out:
        atomic_write_json(out, result, indent=2)
        print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    run_cli(main)
