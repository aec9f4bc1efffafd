"""Stage-1 learning curve on synthetic scenes: do the held-out probes pass the random initialisation?

Trains the CPU stage-1 config (``tools/train.py``, one subprocess per arm: the scenes, or their object crops)
with its two probe hooks and collects their curves beside the random initialisation probed as initialised
and with BN recalibrated. Details: ``projects/orl_evidence/README.md``; command line:
``projects/orl_evidence/tools/stage1_curve.py``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from orl_plugin.pipeline import data_root_options, load_config, repo_root, schedule_options, with_pythonpath
from orl_plugin.store import atomic_write_json

if TYPE_CHECKING:  # annotations only: the module imports torch where it uses it
    import numpy as np
    import torch

ARMS = ('scenes', 'object-crops')
CPU_CONFIG = 'configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py'
DONE = 'arm_done.json'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line (``--data-root`` defaults to ``OUT/data``)."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='work_dirs/stage1_curve', help='output folder')
    p.add_argument('--config', default=CPU_CONFIG, help='stage-1 config with the two probe hooks')
    p.add_argument(
        '--data-root', default=None, help='synthetic scenes; default OUT/data, generated with --num-images if absent')
    p.add_argument('--num-images', type=int, default=2000)
    p.add_argument('--arms', nargs='+', default=list(ARMS), choices=ARMS)
    p.add_argument('--epochs', type=int, default=30, help="training epochs of the scenes arm (cosine over them)")
    p.add_argument(
        '--crop-epochs',
        type=int,
        default=2,
        help='training epochs of the object-crops arm (its epochs are ~4.5x longer: one image per object)')
    p.add_argument('--view-size', type=int, default=64, help='side of the two training views')
    p.add_argument('--probe-interval', type=int, default=2, help='epochs between probes')
    p.add_argument('--max-probe-objects', type=int, default=2000, help='cap on the crops of each probe split')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='passed to every arm\'s tools/train.py after the benchmark\'s own, to try a recipe change '
        '(e.g. optim_wrapper.optimizer.lr=0.01); use its own --out')
    p.add_argument('--verbose', action='store_true', help="stream the runs' output")
    args = p.parse_args(argv)
    if args.data_root is None:
        args.data_root = osp.join(args.out, 'data')
    return args


def ensure_scenes(root: str, num_images: int) -> None:
    """Synthetic scenes (generator seed 7) under ``root``, generated once."""
    from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
    if not osp.isfile(osp.join(root, 'annotations', 'instances_val.json')):
        print(f'[bench] generating {num_images} synthetic scenes under {root}', flush=True)
        make_synthetic_scenes(root, num_images=num_images, seed=7)


def ensure_object_crops(scenes: str, out: str, size: int = 96) -> int:
    """The training split's ground-truth object crops as a folder of images with a COCO image list
    (no annotations: the arm trains without labels). Written once; returns the crop count."""
    import mmcv
    ann = osp.join(out, 'annotations', 'crops.json')
    if osp.isfile(ann):
        with open(ann) as f:
            return len(json.load(f)['images'])
    from orl_plugin.evaluation.object_probe import object_crops
    crops, _ = object_crops(_split_infos(scenes, 'train'), size)
    os.makedirs(osp.join(out, 'images'), exist_ok=True)
    images = []
    for i, c in enumerate(crops):
        name = f'{i:06d}.jpg'
        mmcv.imwrite(c, osp.join(out, 'images', name))
        images.append(dict(id=i + 1, file_name=name, width=size, height=size))
    os.makedirs(osp.dirname(ann), exist_ok=True)
    atomic_write_json(ann, dict(images=images, annotations=[], categories=[]), indent=2)
    return len(images)


def _split_infos(root: str, split: str) -> List[dict]:
    from orl_plugin.datasets.scene_dataset import scene_data_infos
    return scene_data_infos(
        dict(data_root=root, ann_file=f'annotations/instances_{split}.json', data_prefix=dict(img_path='images/')))


def view_size_options(cfg: Dict[str, Any], size: int) -> List[str]:
    """cfg-options setting the output side of every view's ``RandomResizedCrop``."""
    pipeline = cfg['train_dataloader']['dataset']['pipeline']
    opts = []
    for i, t in enumerate(pipeline):
        if t.get('type') != 'MultiView':
            continue
        for j, view in enumerate(t['transforms']):
            for k, step in enumerate(view):
                if step.get('type') == 'RandomResizedCrop':
                    opts.append(f'train_dataloader.dataset.pipeline.{i}.transforms.{j}.{k}.scale={size}')
    if not opts:
        raise SystemExit('the config has no MultiView RandomResizedCrop to resize')
    return opts


def hook_options(cfg: Dict[str, Any], interval: int, max_objects: int) -> List[str]:
    """cfg-options running both probe hooks every ``interval`` epochs (the object probe on at most ``max_objects``)."""
    opts = []
    types = [h.get('type') for h in cfg.get('custom_hooks', [])]
    for name in ('ObjectProbeHook', 'ViewRetrievalHook'):
        if name not in types:
            raise SystemExit(f'the config has no {name} in custom_hooks')
        i = types.index(name)
        opts.append(f'custom_hooks.{i}.interval={interval}')
        if name == 'ObjectProbeHook':
            opts.append(f'custom_hooks.{i}.max_objects={max_objects}')
    return opts


def read_curves(log_dir: str) -> Dict[str, list]:
    """``[iteration, value]`` lists of both probes, the view features' rank and the training loss."""
    curves: Dict[str, list] = dict(object_probe=[], view_retrieval=[], view_rank=[], loss=[])
    with open(osp.join(log_dir, 'vis_data', 'scalars.json')) as f:
        for line in f:
            rec = json.loads(line)
            if 'probe/object_knn_top1' in rec:
                curves['object_probe'].append([rec['step'], rec['probe/object_knn_top1']])
            if 'probe/view_top1' in rec:
                curves['view_retrieval'].append([rec['step'], rec['probe/view_top1']])
            if 'probe/view_rank' in rec:
                curves['view_rank'].append([rec['step'], rec['probe/view_rank']])
            if 'loss' in rec and 'lr' in rec:
                curves['loss'].append([rec['step'], rec['loss']])
    return curves


def run_arm(arm: str, args: argparse.Namespace, cfg: Dict[str, Any], crops_root: Optional[str]) -> dict:
    """Train one arm in a ``tools/train.py`` subprocess and read its curves; a finished arm's record as saved."""
    work = osp.join(args.out, arm)
    done = osp.join(work, DONE)
    if osp.isfile(done):
        with open(done) as f:
            print(f'[bench] {arm}: done before, not rerun ({done})', flush=True)
            return json.load(f)
    epochs = args.crop_epochs if arm == 'object-crops' else args.epochs
    interval = min(args.probe_interval, epochs)
    opts = (
        data_root_options(args.config, args.data_root) + schedule_options(args.config, epochs) +
        view_size_options(cfg, args.view_size) + hook_options(cfg, interval, args.max_probe_objects) +
        [f'default_hooks.checkpoint.interval={epochs}', 'default_hooks.logger.interval=25'])
    if arm == 'object-crops':
        opts += [
            f'train_dataloader.dataset.data_root={crops_root}/',
            'train_dataloader.dataset.ann_file=annotations/crops.json'
        ]
    opts += args.cfg_options
    cmd = [
        sys.executable,
        osp.join(repo_root(), 'tools', 'train.py'), args.config, '--work-dir', work, '--cfg-options', *opts
    ]
    print(f'[bench] {arm}: training {epochs} epochs ({work})', flush=True)
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    with open(osp.join(work, 'bench_stdout.log'), 'w') as log:
        rc = subprocess.run(
            cmd,
            stdout=None if args.verbose else log,
            stderr=subprocess.STDOUT,
            cwd=repo_root(),
            env=with_pythonpath(repo_root())).returncode
    if rc:
        raise SystemExit(f'[bench] {arm}: tools/train.py exited {rc}; see {osp.join(work, "bench_stdout.log")}')
    runs = sorted(d for d in os.listdir(work) if osp.isfile(osp.join(work, d, 'vis_data', 'scalars.json')))
    rec = dict(
        arm=arm,
        epochs=epochs,
        wall_s=round(time.time() - t0, 1),
        log_dir=osp.join(work, runs[-1]),
        **read_curves(osp.join(work, runs[-1])))
    atomic_write_json(done, rec, indent=2)
    return rec


def parse_cfg_options(options: List[str]) -> Dict[str, Any]:
    """``KEY=VALUE`` strings as ``tools/train.py --cfg-options`` reads them (mmengine's ``DictAction``)."""
    from mmengine.config import DictAction
    p = argparse.ArgumentParser()
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(['--cfg-options', *options]).cfg_options


def random_init_baselines(args: argparse.Namespace) -> Dict[str, float]:
    """Both probes of the seed-0 initialisation, with the identity BN of a fresh network and with
    BN statistics measured on the reference crops (cumulative average over them, train-mode forwards)."""
    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    from orl_plugin.engine.hooks.view_retrieval_hook import training_view_pipelines
    from orl_plugin.evaluation.object_probe import object_crops, object_knn_probe
    from orl_plugin.evaluation.view_retrieval import make_view_pairs, view_retrieval

    cfg = Config.fromfile(args.config)
    if args.cfg_options:  # the arms' recipe change also applies to the network the baselines probe
        cfg.merge_from_dict(parse_cfg_options(args.cfg_options))
    pipelines = copy.deepcopy(training_view_pipelines(cfg))
    for view in pipelines:
        for step in view:
            if step.get('type') == 'RandomResizedCrop':
                step['scale'] = args.view_size
    val = _split_infos(args.data_root, 'val')
    splits = (object_crops(_split_infos(args.data_root, 'train'), 64, max_objects=args.max_probe_objects),
              object_crops(val, 64, max_objects=args.max_probe_objects))
    views = make_view_pairs([i['img_path'] for i in val[:256]], pipelines, seed=0)  # the hook's defaults
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs a line per parameter; the runs' own logs keep it
    try:
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            torch.manual_seed(0)
            model = MODELS.build(cfg.model)
            model.init_weights()
    finally:
        logger.setLevel(level)
    res = view_retrieval(model, views)
    out = dict(object_probe=object_knn_probe(model, *splits)['top1'], view_retrieval=res['top1'], view_rank=res['rank'])
    recalibrate_bn(model, splits[0][0])
    res = view_retrieval(model, views)
    out.update(
        object_probe_bn_recalibrated=object_knn_probe(model, *splits)['top1'],
        view_retrieval_bn_recalibrated=res['top1'],
        view_rank_bn_recalibrated=res['rank'])
    return {k: round(v, 4) for k, v in out.items()}


def recalibrate_bn(model: 'torch.nn.Module', crops: Sequence[np.ndarray]) -> None:
    """Replace the backbone's BN statistics by their cumulative average over ``crops`` (train-mode
    forwards of the 2c feature); the *fair* random baseline: a fresh network's eval-mode BN is the identity."""
    import torch

    from orl_plugin.models import RoIFeature
    for m in model.backbone.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        RoIFeature()(model, crops)


def main(argv: Optional[List[str]] = None) -> int:
    """Baselines, then every arm; write ``results.json`` and print the table."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    ensure_scenes(args.data_root, args.num_images)
    cfg = load_config(args.config)
    crops_root = None
    results: Dict[str, Any] = dict(
        config=args.config,
        data_root=osp.abspath(args.data_root),
        epochs=args.epochs,
        crop_epochs=args.crop_epochs,
        view_size=args.view_size,
        cfg_options=args.cfg_options,
        arms={})
    if 'object-crops' in args.arms:
        crops_root = osp.join(args.out, 'object_crops')
        results['object_crops'] = ensure_object_crops(args.data_root, crops_root)
    results['random_init'] = random_init_baselines(args)
    for arm in args.arms:
        results['arms'][arm] = run_arm(arm, args, cfg, crops_root)
        atomic_write_json(osp.join(args.out, 'results.json'), results, indent=2)
    atomic_write_json(osp.join(args.out, 'results.json'), results, indent=2)

    r = results['random_init']
    print(f"\nrandom init: object probe {r['object_probe']:.3f} "
          f"(BN recalibrated {r['object_probe_bn_recalibrated']:.3f}), "
          f"view retrieval {r['view_retrieval']:.3f} ({r['view_retrieval_bn_recalibrated']:.3f}), "
          f"view feature rank {r['view_rank']:.1f} ({r['view_rank_bn_recalibrated']:.1f})")
    print('| arm | iteration | object probe | view retrieval | view feature rank |\n|---|---|---|---|---|')
    for arm, rec in results['arms'].items():
        views, ranks = dict(map(tuple, rec['view_retrieval'])), dict(map(tuple, rec.get('view_rank', [])))
        for step, top1 in rec['object_probe']:
            v, k = views.get(step), ranks.get(step)
            print(f"| {arm} | {step} | {top1:.3f} | {'-' if v is None else f'{v:.3f}'} | "
                  f"{'-' if k is None else f'{k:.1f}'} |")
    print(f"[bench] results: {osp.join(args.out, 'results.json')}")
    return 0
