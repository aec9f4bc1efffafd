"""Shared pytest fixtures (keep this file small: fixtures used by several test files only)."""
import os.path as osp

import numpy as np
import pytest


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory) -> str:
    """A folder of eight 32x32 JPEGs (smooth random colours), written once per session."""
    from PIL import Image

    folder = tmp_path_factory.mktemp('image_folder')
    rng = np.random.default_rng(0)
    for i in range(8):
        # Low-frequency colour field, upsampled: compresses well and is not all noise.
        coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((32, 32), Image.BILINEAR)
        img.save(osp.join(folder, f'{i:03d}.jpg'), quality=90)
    return str(folder)


@pytest.fixture(scope='session')
def synthetic_scenes(tmp_path_factory) -> dict:
    """A tiny synthetic-scenes set (8 images, 64x64, COCO json), written once per session.

    Returns the summary dict of ``make_synthetic_scenes`` (``out_dir``, ``image_dir``,
    ``ann_file``, ``train_ann_file``, ``val_ann_file``, counts).
    """
    from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes

    out_dir = tmp_path_factory.mktemp('synthetic_scenes')
    return make_synthetic_scenes(str(out_dir), num_images=8, seed=0, img_size=(64, 64),
                                 workers=1)


@pytest.fixture
def tiny_byol_cfg(image_folder):
    """Factory of a tiny CPU BYOL config over ``image_folder``.

    ``tiny_byol_cfg(work_dir, max_epochs, **extra)`` returns an mmengine ``Config``:
    mmpretrain ``BYOL`` with a ResNet-18 at 1/4 width, 32 px views, batch 4 (2 iterations
    per epoch), SGD with momentum, a per-iteration cosine schedule over 3 epochs and a
    checkpoint every epoch; ``extra`` is merged in at the top level.
    """
    from mmengine.config import Config

    view = [dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.5, 1.0)),
            dict(type='RandomFlip', prob=0.5)]
    model = dict(
        type='BYOL',
        base_momentum=0.01,
        data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True),
        backbone=dict(type='ResNet', depth=18, stem_channels=16, base_channels=16,
                      out_indices=[3], norm_cfg=dict(type='BN')),
        neck=dict(type='NonLinearNeck', in_channels=128, hid_channels=64, out_channels=32,
                  num_layers=2, with_bias=True, with_last_bn=False, with_avg_pool=True),
        head=dict(type='LatentPredictHead', loss=dict(type='CosineSimilarityLoss'),
                  predictor=dict(type='NonLinearNeck', in_channels=32, hid_channels=64,
                                 out_channels=32, num_layers=2, with_bias=True,
                                 with_last_bn=False, with_avg_pool=False)))

    def make(work_dir: str, max_epochs: int, **extra) -> Config:
        return Config(dict(
            default_scope='mmpretrain',
            custom_imports=dict(imports=['orl_plugin'], allow_failed_imports=False),
            model=model,
            work_dir=work_dir,
            train_dataloader=dict(
                batch_size=4, num_workers=0, persistent_workers=False,
                sampler=dict(type='DefaultSampler', shuffle=True),
                collate_fn=dict(type='default_collate'),
                dataset=dict(type='CustomDataset', data_root=image_folder, with_label=False,
                             pipeline=[dict(type='LoadImageFromFile'),
                                       dict(type='MultiView', num_views=[1, 1],
                                            transforms=[view, view]),
                                       dict(type='PackInputs')])),
            optim_wrapper=dict(type='OptimWrapper',
                               optimizer=dict(type='SGD', lr=0.05, momentum=0.9,
                                              weight_decay=1e-4)),
            param_scheduler=[dict(type='CosineAnnealingLR', T_max=3, by_epoch=True, begin=0,
                                  end=3, convert_to_iter_based=True)],
            train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=max_epochs),
            default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                               checkpoint=dict(type='CheckpointHook', interval=1)),
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
            randomness=dict(seed=0),
            log_level='WARNING',
            **extra))

    return make
