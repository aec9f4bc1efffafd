#!/usr/bin/env python
"""Object kNN probe of one or more checkpoints: do their backbones tell object categories apart?

Crops of the annotated objects of the reference split (train) are the kNN memory; each crop of the
query split (val) is classified by a similarity-weighted vote of its nearest reference crops, with
the online backbone's pooled, L2-normalised features (the stage-2c feature). ``random`` as a
checkpoint scores the config's random initialisation (seeded). Any checkpoint with ``backbone.``
(stage 1, stage 3, mmdet), ``online_net.0.`` (official ORL) or bare ResNet keys works.

    python tools/analysis_tools/object_probe.py configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py \\
        random work_dirs/stage1/epoch_30.pth work_dirs/stage3/epoch_30.pth --data-root data/synthetic_scenes
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from orl_plugin.datasets.scene_dataset import scene_data_infos
from orl_plugin.evaluation.object_probe import object_crops, object_knn_probe
from orl_plugin.store import atomic_write_json
from orl_plugin.utils.checkpoint import extract_backbone, get_state_dict, load_checkpoint_file
from orl_plugin.utils.error_policy import InputError, check_out_file, out_help, run_cli


class _Encoder(torch.nn.Module):
    """What the probe reads of a self-supervised model: ``data_preprocessor`` and ``extract_feat``."""

    def __init__(self, backbone: torch.nn.Module, data_preprocessor: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.data_preprocessor = data_preprocessor

    def extract_feat(self, inputs: torch.Tensor):
        return self.backbone(inputs)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='a config whose model.backbone / data_preprocessor match the checkpoints')
    p.add_argument('checkpoints', nargs='+', help="checkpoint files, or 'random'")
    p.add_argument('--data-root', default='data/synthetic_scenes', help='COCO-format data root with boxes')
    p.add_argument('--reference', default='annotations/instances_train.json')
    p.add_argument('--query', default='annotations/instances_val.json')
    p.add_argument('--img-prefix', default='images/')
    p.add_argument('--crop-size', type=int, default=64)
    p.add_argument('--k', type=int, default=20)
    p.add_argument('--seed', type=int, default=0, help="seed of the 'random' initialisation")
    p.add_argument('--out', metavar='FILE', help=out_help('JSON; without --out the results are only printed'))
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out = check_out_file(args.out) if args.out is not None else None
    cfg = Config.fromfile(args.config)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        splits = [
            object_crops(
                scene_data_infos(
                    dict(data_root=args.data_root, ann_file=ann, data_prefix=dict(img_path=args.img_prefix))),
                args.crop_size) for ann in (args.reference, args.query)
        ]
        pre_cfg = dict(cfg.model.get('data_preprocessor') or dict(type='SelfSupDataPreprocessor'))
        results = []
        for ckpt in args.checkpoints:
            torch.manual_seed(args.seed)
            backbone = MODELS.build(cfg.model.backbone)
            backbone.init_weights()
            if ckpt != 'random':
                _, tensors = extract_backbone(get_state_dict(load_checkpoint_file(ckpt), ckpt), ckpt)
                missing, unexpected = backbone.load_state_dict(tensors, strict=False)
                if missing:
                    raise InputError(f'{ckpt}: backbone weights missing for {len(missing)} tensors, '
                                     f'e.g. {missing[:3]}; does --config match the checkpoint?')
            model = _Encoder(backbone, MODELS.build(pre_cfg))
            res = object_knn_probe(model, *splits, k=args.k)
            res['checkpoint'] = ckpt
            results.append(res)
            print(
                f'{ckpt}: kNN top-1 {res["top1"]:.4f} ({res["num_query"]} query / {res["num_reference"]} '
                f'reference objects; most common class {res["chance"]:.4f})',
                flush=True)
            if res['num_nonfinite']:
                print(
                    f'{ckpt}: warning: {res["num_nonfinite"]} of {res["num_query"] + res["num_reference"]} crop '
                    'features are NaN/inf (diverged weights or broken BN statistics): the score means nothing',
                    file=sys.stderr,
                    flush=True)
    if out:
        atomic_write_json(
            out,
            dict(config=args.config, data_root=args.data_root, k=args.k, crop_size=args.crop_size, results=results),
            indent=2)
    return 0


if __name__ == '__main__':
    run_cli(main)
