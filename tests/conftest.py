"""Shared pytest fixtures (keep this file small: fixtures used by several test files only)."""
import os.path as osp

import numpy as np
import pytest
from helpers import BYOL_SYNTHETIC_CONFIG, scene_picture, tiny_byol_overrides


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
    return make_synthetic_scenes(str(out_dir), num_images=8, seed=0, img_size=(64, 64), workers=1)


#: What each file of :func:`mixed_images` is. ``bad`` maps a file to its kind of failure.
MIXED_IMAGES = dict(
    plain=['photo.jpg', 'photo.png', 'photo2.jpg'],
    grey=['grey.png'],
    alpha=['rgba.png'],
    cmyk=['cmyk.jpg'],
    sixteen_bit=['sixteen.png'],
    exif=['exif_rotated.jpg'],
    tiny=['tiny.png'],
    large=['large.jpg'],
    bad={'truncated.jpg': 'truncated', 'empty.jpg': 'empty', 'notanimage.png': 'undecodable'},
)


@pytest.fixture(scope='session')
def mixed_images(tmp_path_factory) -> dict:
    """A folder with the debris of a real photo folder, each file under 1 MB, written once per
    session: plain RGB JPEG/PNG (160x120), grey, RGBA, CMYK, 16-bit RGB, EXIF-rotated
    (orientation 6, raw 160x96), a 20x15 thumbnail, a 3000x2000 photo, and three bad files (a
    truncated JPEG, an empty file, a text file named .png).

    Returns :data:`MIXED_IMAGES` plus ``folder``, ``good`` and ``exif_raw`` (the EXIF image's
    raw RGB pixels, in the orientation the official code reads).
    """
    import cv2
    from PIL import Image

    folder = tmp_path_factory.mktemp('mixed_images')
    path = lambda name: str(folder / name)  # noqa: E731
    Image.fromarray(scene_picture(160, 120, 0)).save(path('photo.jpg'), quality=90)
    Image.fromarray(scene_picture(160, 120, 1)).save(path('photo.png'))
    Image.fromarray(scene_picture(160, 120, 2)).save(path('photo2.jpg'), quality=90)
    Image.fromarray(scene_picture(160, 120, 3)).convert('L').save(path('grey.png'))
    rgba = np.dstack([scene_picture(160, 120, 4), np.full((120, 160), 128, np.uint8)])
    Image.fromarray(rgba, 'RGBA').save(path('rgba.png'))
    Image.fromarray(scene_picture(160, 120, 5)).convert('CMYK').save(path('cmyk.jpg'), quality=90)
    cv2.imwrite(path('sixteen.png'), scene_picture(160, 120, 6).astype(np.uint16)[..., ::-1] * 257)
    raw = scene_picture(160, 96, 7)
    raw[:16, :24] = (255, 0, 0)  # a red corner marks the raw top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(raw).save(path('exif_rotated.jpg'), quality=95, exif=exif.tobytes())
    Image.fromarray(scene_picture(20, 15, 8)).save(path('tiny.png'))
    Image.fromarray(scene_picture(3000, 2000, 9)).save(path('large.jpg'), quality=75)
    good_jpeg = open(path('photo.jpg'), 'rb').read()
    with open(path('truncated.jpg'), 'wb') as f:
        f.write(good_jpeg[:len(good_jpeg) // 2])
    open(path('empty.jpg'), 'wb').close()
    with open(path('notanimage.png'), 'w') as f:
        f.write('this is a text file, not a PNG\n')
    good = sorted(n for k, v in MIXED_IMAGES.items() if k != 'bad' for n in v)
    exif_raw = np.asarray(Image.open(path('exif_rotated.jpg')).convert('RGB'))
    return dict(MIXED_IMAGES, folder=str(folder), good=good, exif_raw=exif_raw)


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
def one_thread():
    """One torch thread for the test: with tiny tensors on a shared 2-core machine, intra-op
    threads only wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
        return SimpleNamespace(
            model=model,
            cfg=cfg,
            logger=recording_logger,
            visualizer=visualizer,
            scalars=scalars,
            epoch=0,
            iter=0,
            max_epochs=1,
            train_loop=None)

    return make
