"""Stage 2b: selective-search transform, proposer model, recall metric and the whole step."""
import ctypes
import ctypes.util
import os.path as osp

import cv2
import mmcv
import numpy as np
import pytest
from helpers import ROOT
from mmengine.config import Config
from mmengine.runner import Runner

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.datasets.transforms.loading import LoadImageOrSkip
from orl_plugin.datasets.transforms.selective_search import SelectiveSearch, scale_boxes_back, selective_search
from orl_plugin.evaluation.box_metrics import gt_recall, matched_gt_labels, xywh_to_xyxy
from orl_plugin.evaluation.selective_search_metric import SelectiveSearchMetric
from orl_plugin.models.selective_search_proposer import SelectiveSearchProposer
from orl_plugin.store import MiningStore

SS_CONFIG = osp.join(ROOT, 'configs/orl/stage2/selective-search_synthetic.py')


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('scenes'))
    make_synthetic_scenes(out, num_images=8, seed=3, img_size=(128, 96))
    return out


def _run_ss(data_root, work_dir, out_file, name, **overrides):
    cfg = Config.fromfile(SS_CONFIG)
    cfg.merge_from_dict({
        'test_dataloader.dataset.data_root': data_root, 'test_dataloader.num_workers': 0, 'test_cfg.chunk_size': 3,
        'test_evaluator.out_file': out_file, **overrides
    })
    cfg.work_dir = work_dir
    cfg.experiment_name = name
    cfg.log_level = 'WARNING'
    return Runner.from_cfg(cfg).test()


def test_tiny_image_gives_whole_image_box():
    for h, w in [(1, 1), (2, 3)]:
        img = np.full((h, w, 3), 127, np.uint8)
        boxes = selective_search(img)
        assert boxes.dtype == np.int32 and boxes.shape[1] == 4 and len(boxes) >= 1
        # Whatever OpenCV returns for a one-region image, box 0 covers the whole image.
        assert boxes[0].tolist() == [0, 0, w, h]


def test_transform_raw_opencv_order_and_max_size(scenes):
    img = cv2.imread(osp.join(scenes, 'images', '000000.jpg'))
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(img)
    ss.switchToSelectiveSearchFast()
    unseeded = ss.process()
    libc = ctypes.CDLL(ctypes.util.find_library('c'))
    libc.srand(1)  # OpenCV ranks boxes with C rand(): the transform reseeds it per image
    raw = ss.process()
    out = SelectiveSearch()(dict(img=img))
    assert 'img' not in out  # not sent back from the workers
    np.testing.assert_array_equal(out['proposals'], raw)
    # reproducible call after call; the seed changes the order only, never the set
    np.testing.assert_array_equal(selective_search(img), raw)
    assert sorted(map(tuple, unseeded.tolist())) == sorted(map(tuple, raw.tolist()))
    small = SelectiveSearch(max_size=64, keep_img=True)(dict(img=img))
    b = small['proposals']
    assert small['img'] is img and len(b) > 0
    assert (b[:, :2] >= 0).all() and (b[:, 0] + b[:, 2] <= 128).all() \
        and (b[:, 1] + b[:, 3] <= 96).all()
    assert b[:, 2].max() > 64  # scaled back to the 128-px image


def test_max_size_boxes_in_original_pixels_and_inside(mixed_images):
    """A 3000x2000 photo searched at max_size=200: the boxes of the 200x133 copy, mapped back."""
    img = LoadImageOrSkip()(dict(img_path=osp.join(mixed_images['folder'], 'large.jpg')))['img']
    assert img.shape[:2] == (2000, 3000)
    out = SelectiveSearch(max_size=200, keep_img=True)(dict(img=img, ori_shape=(2000, 3000)))
    b = out['proposals']
    assert out['img'] is img and b.dtype == np.int32 and len(b) > 1
    assert (b[:, :2] >= 0).all() and (b[:, 2:] >= 1).all()
    assert (b[:, 0] + b[:, 2] <= 3000).all() and (b[:, 1] + b[:, 3] <= 2000).all()
    assert b[:, 2].max() > 1000 and b[:, 3].max() > 1000  # original pixels, not the copy's
    small = cv2.resize(img, (200, 133), interpolation=cv2.INTER_AREA)
    sb = selective_search(small).astype(np.float64)
    np.testing.assert_array_equal(b, scale_boxes_back(sb, (133, 200), (2000, 3000)))
    # Each box covers its small-image box scaled by each axis' own factor (15 and 2000/133).
    fx, fy = 3000 / 200, 2000 / 133
    assert (b[:, 0] <= sb[:, 0] * fx).all() and (b[:, 1] <= sb[:, 1] * fy).all()
    assert (b[:, 0] + b[:, 2] >= np.minimum((sb[:, 0] + sb[:, 2]) * fx, 3000) - 1e-6).all()
    assert (b[:, 1] + b[:, 3] >= np.minimum((sb[:, 1] + sb[:, 3]) * fy, 2000) - 1e-6).all()
    # The whole copy maps to the whole image, its last pixel to the image's last pixels.
    np.testing.assert_array_equal(
        scale_boxes_back(np.array([[0, 0, 200, 133], [199, 132, 1, 1]]), (133, 200), (2000, 3000)),
        [[0, 0, 3000, 2000], [2985, 1984, 15, 16]])  # 132 * 2000 / 133 = 1984.96


def test_boxes_in_the_decoded_size_after_an_earlier_resize(scenes):
    """An image made smaller before the search: boxes still in the file's (ori_shape) pixels."""
    img = cv2.imread(osp.join(scenes, 'images', '000000.jpg'))  # 96 x 128
    half = cv2.resize(img, (64, 48), interpolation=cv2.INTER_AREA)
    b = SelectiveSearch()(dict(img=half, ori_shape=(96, 128)))['proposals']
    np.testing.assert_array_equal(b, scale_boxes_back(selective_search(half), (48, 64), (96, 128)))
    assert (b[:, 0] + b[:, 2] <= 128).all() and (b[:, 1] + b[:, 3] <= 96).all()


def test_recall_on_hand_made_case():
    gt = np.array([[0, 0, 100, 100], [200, 200, 300, 260]], np.float32)  # xyxy
    # xywh: exact first GT; a quarter of the second (IoU 0.25 < 0.5)
    props = np.array([[0, 0, 100, 100], [200, 200, 25, 60]], np.int32)
    assert gt_recall(props, gt, 0.5) == (1, 2)
    assert gt_recall(props, gt, 0.2) == (2, 2)
    assert gt_recall(np.zeros((0, 4), np.int32), gt) == (0, 2)
    np.testing.assert_allclose(xywh_to_xyxy([[1, 2, 3, 4]]), [[1, 2, 4, 6]])
    m = matched_gt_labels(props, gt, np.array([0, 2]), 0.5)
    assert m.tolist() == [[True, False, False], [False, False, False]]


def test_metric_known_case(tmp_path):
    metric = SelectiveSearchMetric(
        out_file=str(tmp_path / 'ss.orlstore'),
        json_file=str(tmp_path / 'ss.json'),
        filter_cfg=dict(min_size=60, max_ratio=3.0, max_iou=0.5, topk=100))
    gt0 = np.array([[0, 0, 100, 100], [200, 200, 300, 300]], np.float32)
    samples = [
        # image 0: both GT recalled by raw boxes; the 10-px box survives no filter but the
        # 100-px one does -> filtered recall 1 of 2 here
        dict(
            index=0,
            file_name='a.jpg',
            img_id=7,
            gt_bboxes=gt0,
            gt_labels=np.array([0, 1]),
            proposals=np.array([[200, 200, 100, 100], [0, 0, 100, 100], [0, 0, 10, 10]], np.int32)),
        # image 1: no GT box hit
        dict(
            index=2,
            file_name='c.jpg',
            img_id=9,
            gt_bboxes=gt0[:1],
            gt_labels=np.array([0]),
            proposals=np.array([[50, 50, 100, 100]], np.int32)),
        dict(
            index=1,
            file_name='b.jpg',
            img_id=8,
            skipped=True,
            skip_reason='b.jpg: empty file',
            gt_bboxes=gt0[:1],
            gt_labels=np.array([0])),
    ]
    metric.process(None, samples)
    res = metric.compute_metrics(metric.results)
    # The filter de-duplicates nothing here (IoU 0 between the two big boxes): both kept.
    assert res['recall@0.5_raw'] == pytest.approx(2 / 3)
    assert res['recall@0.5_filtered'] == pytest.approx(2 / 3)
    assert res['num_skipped'] == 1 and res['num_gt'] == 3
    assert res['mean_raw_boxes'] == pytest.approx(2.0)
    store = MiningStore.open(str(tmp_path / 'ss.orlstore'))
    assert store.num_images == 3 and store.num_boxes(1) == 0
    assert store.boxes(0).tolist() == [[200, 200, 100, 100], [0, 0, 100, 100], [0, 0, 10, 10]]
    assert store.image_ids.tolist() == [7, 8, 9] and store.file_name(2) == 'c.jpg'
    assert store.skipped == [dict(index=1, file_name='b.jpg', reason='b.jpg: empty file')]
    off = MiningStore.open(str(tmp_path / 'ss.json'))
    assert off.boxes(0).tolist() == store.boxes(0).tolist()

    # a stricter filter: only the first (200-px) box survives in image 0
    metric2 = SelectiveSearchMetric(out_file=str(tmp_path / 'ss2.orlstore'), filter_cfg=dict(min_size=60, topk=1))
    metric2.process(None, samples)
    res2 = metric2.compute_metrics(metric2.results)
    assert res2['recall@0.5_filtered'] == pytest.approx(1 / 3)


def test_metric_rejects_missing_index(tmp_path):
    metric = SelectiveSearchMetric(out_file=str(tmp_path / 'x.orlstore'))
    metric.process(
        None,
        [dict(index=0, proposals=np.zeros((1, 4), np.int32)),
         dict(index=2, proposals=np.zeros((1, 4), np.int32))])
    with pytest.raises(RuntimeError, match='missing'):
        metric.compute_metrics(metric.results)


def test_step_matches_opencv_and_proposer_path(scenes, tmp_path):
    out = str(tmp_path / 'ss.orlstore')
    metrics = _run_ss(scenes, str(tmp_path / 'w1'), out, 'ss_workers')
    assert metrics['selective_search/num_images'] == 6  # the train split
    assert 0.0 <= metrics['selective_search/recall@0.5_raw'] <= 1.0
    assert metrics['selective_search/recall@0.5_raw'] >= \
        metrics['selective_search/recall@0.5_filtered']
    store = MiningStore.open(out)
    for i in range(store.num_images):
        with open(osp.join(scenes, 'images', store.file_name(i)), 'rb') as f:
            img = mmcv.imfrombytes(f.read(), backend='pillow')  # as the config decodes
        np.testing.assert_array_equal(store.boxes(i), selective_search(img))
    # Same boxes when the proposer model computes them in the main process.
    out2 = str(tmp_path / 'ss2.orlstore')
    _run_ss(scenes, str(tmp_path / 'w2'), out2, 'ss_model',
            **{'test_dataloader.dataset.pipeline': [dict(type='LoadImageOrSkip', imdecode_backend='pillow')]})
    store2 = MiningStore.open(out2)
    for i in range(store.num_images):
        np.testing.assert_array_equal(store2.boxes(i), store.boxes(i))


def test_proposer_model_refuses_training():
    model = SelectiveSearchProposer()
    assert sum(p.numel() for p in model.parameters()) == 0
    with pytest.raises(ValueError, match='loss'):
        model([np.zeros((8, 8, 3), np.uint8)], mode='loss')
