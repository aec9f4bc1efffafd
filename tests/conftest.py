"""Shared pytest fixtures (keep this file small: fixtures used by several test files only)."""
import os.path as osp
from typing import Dict

import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BYOL_SYNTHETIC_CONFIG = osp.join(ROOT, 'configs', 'byol',
                                 'byol_resnet18_1xb32-coslr-30e_synthetic.py')


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


def tiny_byol_overrides(data_root: str, max_epochs: int, batch_size: int) -> Dict[str, object]:
    """Overrides (``--cfg-options`` keys) shrinking the CPU BYOL config to a few seconds.

    32 px views, no loader workers, a checkpoint and a log line every epoch/iteration.
    """
    options: Dict[str, object] = {
        'train_dataloader.batch_size': batch_size,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.dataset.data_root': data_root,
        'train_cfg.max_epochs': max_epochs,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.checkpoint.max_keep_ckpts': -1,
        'default_hooks.logger.interval': 1,
        'randomness.seed': 0,
    }
    for view in (0, 1):  # MultiView(transforms=[view_pipeline1, view_pipeline2])
        options[f'train_dataloader.dataset.pipeline.1.transforms.{view}.0.scale'] = 32
    return options


@pytest.fixture
def tiny_byol_cfg(synthetic_scenes):
    """Factory: ``tiny_byol_cfg(work_dir, max_epochs, **top_level)`` -> mmengine ``Config``.

    The project's CPU BYOL config (ResNet-18, SGD + momentum, warm-up + cosine) on the
    session's synthetic scenes (6 training images), batch 3: 2 iterations per epoch.
    """
    from mmengine.config import Config

    def make(work_dir: str, max_epochs: int, **top_level) -> Config:
        cfg = Config.fromfile(BYOL_SYNTHETIC_CONFIG)
        cfg.merge_from_dict(tiny_byol_overrides(synthetic_scenes['out_dir'], max_epochs, 3))
        cfg.merge_from_dict(dict(work_dir=work_dir, log_level='WARNING', **top_level))
        return cfg

    return make


@pytest.fixture
def colour_model():
    """A stand-in for a self-supervised model in the probes: its ``backbone`` maps each image to its
    mean normalised colour (a 3-channel 1x1 map), so which images look alike is known. It has the
    public interface the stage-2 features read: ``data_preprocessor`` and ``extract_feat``."""
    import torch
    from mmengine.model import ImgDataPreprocessor

    class _ColourBackbone(torch.nn.Module):

        def forward(self, x):
            return (x.mean(dim=(2, 3), keepdim=True), )

    class _ColourModel(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.data_preprocessor = ImgDataPreprocessor(
                mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
            self.backbone = _ColourBackbone()
            self.w = torch.nn.Parameter(torch.zeros(1))  # a device to read

        def extract_feat(self, x):
            return self.backbone(x)

    return _ColourModel()


@pytest.fixture
def diverged_model(colour_model):
    """:func:`colour_model` after a diverged training: every feature is NaN."""
    import torch

    class _NanBackbone(torch.nn.Module):

        def forward(self, x):
            return (torch.full((x.size(0), 3, 1, 1), float('nan')), )

    colour_model.backbone = _NanBackbone()
    return colour_model


@pytest.fixture
def recording_logger():
    """Stands in for ``runner.logger`` where a test reads what a hook logged: ``records`` holds
    ``(level, message)`` pairs."""

    class _RecordingLogger:

        def __init__(self) -> None:
            self.records: list = []

        def info(self, msg: str) -> None:
            self.records.append(('info', msg))

        def warning(self, msg: str) -> None:
            self.records.append(('warning', msg))

    return _RecordingLogger()


@pytest.fixture
def hook_runner(recording_logger):
    """``make(model, cfg=None)``: a runner stand-in for calling a probe hook directly, at epoch 0;
    ``runner.scalars`` holds what the hook logged, ``runner.logger`` is :func:`recording_logger`."""
    from types import SimpleNamespace

    def make(model, cfg=None):
        scalars: list = []
        visualizer = SimpleNamespace(add_scalars=lambda values, step: scalars.append(values))
        return SimpleNamespace(model=model, cfg=cfg, logger=recording_logger, visualizer=visualizer,
                               scalars=scalars, epoch=0, iter=0, max_epochs=1, train_loop=None)

    return make
