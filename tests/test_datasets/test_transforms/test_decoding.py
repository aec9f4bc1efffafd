"""One decoder everywhere, as the official code reads images; boxes fitted to their images."""
import json
import logging
import os.path as osp
import shutil

import numpy as np
import pytest
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS, TRANSFORMS
from PIL import Image

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.transforms.box_ops import clip_boxes_xywh
from orl_plugin.datasets.transforms.loading import BadImageError, LoadImageOrSkip, decode_image, jpeg_is_truncated
from orl_plugin.datasets.transforms.roi_crop import BoxOutsideImageError

BACKENDS = ('pillow', 'cv2')


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture
def warnings_log():
    """Warnings that ``print_log(logger='current')`` sends, as a list of messages."""
    logger = MMLogger.get_current_instance()
    records = []

    class _Keep(logging.Handler):

        def emit(self, record):
            records.append(record.getMessage())

    handler = _Keep(level=logging.WARNING)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _pil_bgr(path, box=None):
    """What the official code reads (``Image.open().convert('RGB')``), as BGR, optionally cropped."""
    img = Image.open(path).convert('RGB')
    if box is not None:
        x, y, w, h = box
        img = img.crop((x, y, x + w, y + h))
    return np.asarray(img)[..., ::-1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_exif_rotated_jpeg_is_read_in_raw_orientation(mixed_images, backend):
    path = osp.join(mixed_images['folder'], 'exif_rotated.jpg')
    with Image.open(path) as pil:
        assert pil.getexif()[0x0112] == 6  # the file does carry "rotate 90"
    out = LoadImageOrSkip(imdecode_backend=backend)(dict(img_path=path))
    img = out['img']
    # Raw orientation: 160 wide, 96 high, the red marker (BGR 0, 0, 255) at the top left.
    assert img.shape == (96, 160, 3) and out['img_shape'] == out['ori_shape'] == (96, 160)
    assert (np.abs(img[4:12, 4:18].astype(int) - (0, 0, 255)) < 40).all()
    reference = _pil_bgr(path)
    diff = np.abs(img.astype(int) - reference)
    if backend == 'pillow':
        assert diff.max() == 0  # the official decoder itself
    else:
        assert diff.mean() < 1.0 and diff.max() <= 8  # libjpeg builds may round differently
    # Honouring the tag is still possible, and then both backends rotate.
    rotated = LoadImageOrSkip(imdecode_backend=backend, ignore_orientation=False)(dict(img_path=path))['img']
    assert rotated.shape == (160, 96, 3)
    assert (np.abs(rotated[4:18, -12:-4].astype(int) - (0, 0, 255)) < 40).all()


def test_official_box_crops_the_same_pixels_as_pil(mixed_images, tmp_path, warnings_log, monkeypatch):
    """2c's loader + filter + crop on an official selective-search JSON give PIL's crops."""
    folder = tmp_path / 'one'
    folder.mkdir()
    shutil.copy(osp.join(mixed_images['folder'], 'exif_rotated.jpg'), folder / 'img.jpg')
    inside, partly, outside, flat = [8, 4, 100, 80], [120, 40, 60, 80], [10, 120, 30, 30], \
        [20, 20, 0, 30]
    # Official format: one list of [x, y, w, h] per image, in the raw pixel orientation.
    (tmp_path / 'ss.json').write_text(json.dumps(dict(bbox=[[inside, partly, outside, flat]])))
    size = 48
    ds = DATASETS.build(
        dict(
            type='ProposalDataset',
            proposal_file=str(tmp_path / 'ss.json'),
            data_prefix=dict(img_path=str(folder)),
            pipeline=[
                dict(type='LoadImageOrSkip'),
                dict(type='FilterBoxes', min_size=8, max_ratio=None, max_iou=None, topk=10),
                dict(type='CropBoxes', size=size)
            ]))
    out = ds[0]
    clipped_partly = [120, 40, 40, 56]  # cut at the raw image's 160 x 96 border
    assert out['kept_boxes'].tolist() == [inside, clipped_partly]
    path = str(folder / 'img.jpg')
    for box, crop in zip(out['kept_boxes'], out['crops']):
        x, y, w, h = box
        expected = np.asarray(
            Image.open(path).convert('RGB').crop((x, y, x + w, y + h)).resize((size, size), Image.BILINEAR))[..., ::-1]
        assert np.array_equal(crop, expected)
    # The two boxes with no pixel in the image were dropped, counted and named.
    filt = ds.pipeline.transforms[1]
    assert filt.num_dropped_boxes == 2
    assert any('dropped 2 of 4 boxes' in m and path in m and '160x96' in m for m in warnings_log)
    # One decode for all the boxes of the image.
    from orl_plugin.datasets.transforms import loading
    calls = []
    real = loading.decode_image
    monkeypatch.setattr(loading, 'decode_image', lambda *a, **k: calls.append(1) or real(*a, **k))
    assert len(ds[0]['crops']) == 2 and len(calls) == 1


@pytest.mark.parametrize('backend', BACKENDS)
def test_roi_crop_same_pixels_as_pil_and_clips(mixed_images, backend):
    path = osp.join(mixed_images['folder'], 'exif_rotated.jpg')
    img = LoadImageOrSkip(imdecode_backend=backend)(dict(img_path=path))['img']
    box = [30, 10, 64, 40]
    crop = TRANSFORMS.build(dict(type='RoICrop', size=(40, 64)))(dict(img=img, roi_bbox=box))['img']
    diff = np.abs(crop.astype(int) - _pil_bgr(path, box))
    assert diff.max() == 0 if backend == 'pillow' else diff.mean() < 1.0
    # Partly outside: the crop of the part inside (PIL alone would pad with black).
    part = TRANSFORMS.build(dict(type='RoICrop', size=(56, 20)))(dict(img=img, roi_bbox=[140, 40, 50, 90]))['img']
    assert np.array_equal(part, img[40:96, 140:160])
    with pytest.raises(BoxOutsideImageError, match='exif_rotated.jpg of size 160x96'):
        TRANSFORMS.build(dict(type='RoICrop'))(dict(img=img, roi_bbox=[30, 100, 20, 20], img_path=path))


def test_clip_and_jitter_keep_boxes_inside():
    boxes, valid = clip_boxes_xywh(np.array([[-5, 3, 20, 10], [50, 50, 5, 5], [10, 10, 0, 4], [2, 2, 6, 6]]), 40, 30)
    assert boxes.tolist()[0] == [0, 3, 15, 10] and boxes.tolist()[3] == [2, 2, 6, 6]
    assert valid.tolist() == [True, False, False, True]
    jitter = TRANSFORMS.build(dict(type='BoxJitter'))
    img = np.zeros((30, 40, 3), np.uint8)
    np.random.seed(0)
    for _ in range(50):
        jb = jitter(dict(img=img, intra_bbox=np.array([30, -10, 30, 30])))['intra_bbox_jittered']
        assert jb[0] >= 0 and jb[1] >= 0 and jb[0] + jb[2] <= 40 and jb[1] + jb[3] <= 30


def test_all_decoders_agree_on_the_odd_files(mixed_images):
    """Grey, RGBA, CMYK and 16-bit files: both backends give 3-channel 8-bit images that agree."""
    folder = mixed_images['folder']
    for name in mixed_images['good']:
        with open(osp.join(folder, name), 'rb') as f:
            content = f.read()
        a = decode_image(content, name, backend='pillow')
        b = decode_image(content, name, backend='cv2')
        assert a.dtype == b.dtype == np.uint8 and a.ndim == 3 and a.shape == b.shape, name
        assert np.abs(a.astype(int) - b).mean() < 2.0, name
    grey = decode_image(open(osp.join(folder, 'grey.png'), 'rb').read())
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    rgba = decode_image(open(osp.join(folder, 'rgba.png'), 'rb').read())
    stored = np.asarray(Image.open(osp.join(folder, 'rgba.png')))[..., :3][..., ::-1]
    assert np.array_equal(rgba, stored)  # alpha dropped, colour kept (PIL's convert('RGB'))
    import cv2
    sixteen = cv2.imread(osp.join(folder, 'sixteen.png'), cv2.IMREAD_UNCHANGED)
    assert sixteen.dtype == np.uint16
    decoded = decode_image(open(osp.join(folder, 'sixteen.png'), 'rb').read())
    assert np.array_equal(decoded, (sixteen >> 8).astype(np.uint8))  # not clipped to white


@pytest.mark.parametrize('backend', BACKENDS)
def test_bad_files_raise_bad_image_error(mixed_images, backend):
    for name, kind in mixed_images['bad'].items():
        with pytest.raises(BadImageError) as err:
            LoadImageOrSkip(imdecode_backend=backend)(dict(img_path=osp.join(mixed_images['folder'], name)))
        assert err.value.kind == kind and name in str(err.value), (name, err.value)
    with pytest.raises(BadImageError, match='cannot read') as err:
        LoadImageOrSkip(imdecode_backend=backend)(dict(img_path='/nonexistent/x.jpg'))
    assert err.value.kind == 'unreadable'


def test_truncation_check_reads_jpeg_structure(mixed_images):
    content = open(osp.join(mixed_images['folder'], 'exif_rotated.jpg'), 'rb').read()
    assert not jpeg_is_truncated(content)
    # Data appended after the image (phone "motion photos") is not truncation ...
    assert not jpeg_is_truncated(content + b'\x00ftypmp42' + bytes(range(256)) * 4)
    # ... a cut is, even with the EXIF block's own markers before it.
    assert jpeg_is_truncated(content[:len(content) * 2 // 3])


@pytest.mark.parametrize('subsampling', (0, 1, 2))
@pytest.mark.parametrize('progressive', (False, True))
def test_jpeg_pixels_are_the_same_with_both_backends(subsampling, progressive):
    """JPEG (all of COCO) decodes to the same pixels with OpenCV as with PIL, the official decoder: the
    COCO GPU-side augmentation configs rely on it for loader speed. Photo-like content, an odd size."""
    import io
    rng = np.random.default_rng(subsampling)
    coarse = rng.integers(0, 256, (13, 21, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((323, 197), Image.BICUBIC), dtype=np.int16)
    photo = np.clip(smooth + rng.integers(-25, 26, smooth.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, 'JPEG', quality=85, subsampling=subsampling, progressive=progressive)
    data = buf.getvalue()
    a = decode_image(data, 'photo.jpg', backend='pillow')
    b = decode_image(data, 'photo.jpg', backend='cv2')
    assert a.shape == b.shape == (197, 323, 3)
    assert np.array_equal(a, b)
