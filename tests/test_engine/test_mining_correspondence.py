"""Stage 2c: encoding every image's boxes once gives exactly the official per-pair pairs.

Tiny set (the shared 8-image 64 px synthetic scenes), hand-made raw boxes and neighbour lists,
a small random-initialised ResNet-18 BYOL (16 base channels) and 32 px crops.
"""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

import orl_plugin  # noqa: F401  (registers everything)
from orl_plugin.datasets.transforms.box_filter import filter_boxes
from orl_plugin.datasets.transforms.crop_boxes import crop_boxes
from orl_plugin.engine.runners.correspondence_loop import CorrespondenceLoop
from orl_plugin.evaluation.correspondence_metric import CorrespondenceMetric, pair_precision
from orl_plugin.models import RoIFeature
from orl_plugin.store import MiningStore, write_knn_store, write_selective_search_store

K = 4
CROP = 32
FILTER = dict(min_size=16, max_ratio=3.0, max_iou=0.5, topk=100)

MODEL = dict(
    type='BYOL',
    base_momentum=0.01,
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(type='ResNet', depth=18, stem_channels=16, base_channels=16, norm_cfg=dict(type='BN')),
    neck=dict(
        type='NonLinearNeck',
        in_channels=128,
        hid_channels=64,
        out_channels=32,
        num_layers=2,
        with_bias=True,
        with_last_bn=False,
        with_avg_pool=True),
    head=dict(
        type='LatentPredictHead',
        predictor=dict(
            type='NonLinearNeck',
            in_channels=32,
            hid_channels=64,
            out_channels=32,
            num_layers=2,
            with_bias=True,
            with_last_bn=False,
            with_avg_pool=False),
        loss=dict(type='CosineSimilarityLoss')))


@pytest.fixture(scope='module')
def inputs(synthetic_scenes, tmp_path_factory):
    """Raw boxes (one image with only tiny ones: fallback), neighbours, a checkpoint."""
    root = synthetic_scenes['out_dir']
    with open(osp.join(root, 'annotations', 'instances.json')) as f:
        images = json.load(f)['images']
    names = [im['file_name'] for im in images]
    ids = [im['id'] for im in images]
    n = len(images)
    rng = np.random.default_rng(1)
    boxes = []
    for i in range(n):
        m = int(rng.integers(10, 40))
        xy = rng.integers(0, 48, (m, 2))
        wh = np.minimum(rng.integers(8, 64, (m, 2)), 64 - xy)
        b = np.concatenate([xy, wh], axis=1).astype(np.int32)
        if i == 2:
            b[:, 2:] = np.minimum(b[:, 2:], 10)  # nothing survives: raw box 0 is kept
        boxes.append(b)
    out = tmp_path_factory.mktemp('mining_inputs')
    ss_path = str(out / 'selective_search.orlstore')
    write_selective_search_store(ss_path, boxes, file_names=names, image_ids=ids)
    knn = np.stack([rng.choice(np.delete(np.arange(n), i), K, replace=False) for i in range(n)])
    knn_path = str(out / 'knn.orlstore')
    write_knn_store(knn_path, knn, file_names=names, image_ids=ids)
    torch.manual_seed(0)
    from mmpretrain.registry import MODELS
    model = MODELS.build(MODEL)
    model.init_weights()
    ckpt = str(out / 'byol_random.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    return dict(
        root=root,
        names=names,
        ids=ids,
        ss_path=ss_path,
        knn_path=knn_path,
        knn=knn,
        ckpt=ckpt,
        n=n,
        paths=[osp.join(root, 'images', nm) for nm in names])


def _cfg(inputs, work_dir, name, **loop_kw):
    loop = dict(
        type='CorrespondenceLoop',
        knn_file=inputs['knn_path'],
        knn_image_num=K,
        topk_bbox_ratio=0.1,
        encode_batch_size=7,
        embed_cache='memory',
        chunk_size=3)
    loop.update(loop_kw)
    return Config(
        dict(
            default_scope='mmpretrain',
            model=MODEL,
            work_dir=str(work_dir),
            experiment_name=name,
            load_from=inputs['ckpt'],
            log_level='WARNING',
            env_cfg=dict(dist_cfg=dict(backend='gloo')),
            test_dataloader=dict(
                batch_size=2,
                num_workers=0,
                persistent_workers=False,
                sampler=dict(type='DefaultSampler', shuffle=False),
                collate_fn=dict(type='pseudo_collate'),
                dataset=dict(
                    type='ProposalDataset',
                    proposal_file=inputs['ss_path'],
                    ann_file='annotations/instances.json',
                    data_root=inputs['root'],
                    data_prefix=dict(img_path='images/'),
                    pipeline=[
                        dict(type='LoadImageOrSkip', imdecode_backend='pillow'),
                        dict(type='FilterBoxes', **FILTER),
                        dict(type='CropBoxes', size=CROP)
                    ])),
            test_cfg=loop,
            test_evaluator=dict(
                type='CorrespondenceMetric',
                out_file=str(work_dir / 'correspondence.orlstore'),
                json_file=str(work_dir / 'correspondence.json'))))


def _run(cfg, name=None):
    if name:
        cfg.experiment_name = name
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    return runner, metrics


def _store_arrays(path):
    s = MiningStore.open(path)
    return {k: np.asarray(s.array(k)) for k in ('boxes', 'box_offsets', 'knn', 'pairs', 'pair_offsets', 'image_ids')}


def _official_pairs(model, inputs):
    """The released procedure: per query, encode its boxes, then re-encode every neighbour's
    boxes (one forward per image's boxes, as ``Correspondence.forward_test``), torch.topk."""

    def sample(i):
        img = np.asarray(Image.open(inputs['paths'][i]).convert('RGB'))[..., ::-1]
        b = filter_boxes(MiningStore.open(inputs['ss_path']).boxes(i), **FILTER)
        return b, crop_boxes(img, b, CROP)

    encode = RoIFeature()
    out = []
    with torch.no_grad():
        for q in range(inputs['n']):
            bq, cq = sample(q)
            fq = encode(model, cq, batch_size=len(cq))
            row = []
            for nb in inputs['knn'][q]:
                bn, cn = sample(int(nb))
                fn = encode(model, cn, batch_size=len(cn))
                smap = torch.mm(fq, fn.t())
                num = int(0.1 * smap.size(0))
                _, top = torch.topk(smap.flatten(), num if num > 0 else 1)
                qi, ni = (top // smap.size(1)).numpy(), (top % smap.size(1)).numpy()
                row.append(np.concatenate([bq[qi], bn[ni]], axis=1))
            out.append((bq, row))
    return out


@pytest.fixture(scope='module')
def memory_run(inputs, tmp_path_factory):
    work = tmp_path_factory.mktemp('corr_memory')
    runner, metrics = _run(_cfg(inputs, work, 'corr_memory'))
    return dict(
        runner=runner,
        metrics=metrics,
        store=str(work / 'correspondence.orlstore'),
        json=str(work / 'correspondence.json'))


def test_encode_once_gives_the_official_pairs(inputs, memory_run):
    loop = memory_run['runner'].test_loop
    assert isinstance(loop, CorrespondenceLoop)
    store = MiningStore.open(memory_run['store'])
    official = _official_pairs(loop.model, inputs)
    total_boxes = 0
    for i, (bq, row) in enumerate(official):
        np.testing.assert_array_equal(store.boxes(i), bq)
        np.testing.assert_array_equal(store.knn(i), inputs['knn'][i])
        total_boxes += len(bq)
        for j, p in enumerate(row):
            np.testing.assert_array_equal(store.pairs(i, j), p, err_msg=f'image {i} slot {j}')
            # pairs per neighbour: max(1, int(0.1 * B))
            assert len(p) == max(1, int(0.1 * len(bq)))
    assert store.num_boxes(2) == 1  # the fallback image kept raw box 0
    np.testing.assert_array_equal(store.boxes(2)[0], MiningStore.open(inputs['ss_path']).boxes(2)[0])
    # every box went through the encoder exactly once
    assert loop.stats['crops_encoded'] == total_boxes
    assert store.params['knn_bbox_pair_ratio'] == 0.1
    assert store.params['bbox_min_size'] == 16 and store.params['intra_bbox_num'] == 100
    assert memory_run['metrics']['correspondence/num_images'] == inputs['n']
    assert 0.0 <= memory_run['metrics']['correspondence/pair_precision'] <= 1.0
    # v2 scenes carry visible masks: the loop passes them on and 'inside' is judged on them
    assert memory_run['metrics']['correspondence/inside_rule_masks'] == 1.0
    # the official JSON, on request, holds the same data
    js = MiningStore.open(memory_run['json'])
    assert js.kind == 'correspondence'
    for i in range(inputs['n']):
        np.testing.assert_array_equal(js.boxes(i), store.boxes(i))
        for j in range(K):
            np.testing.assert_array_equal(js.pairs(i, j), store.pairs(i, j))
    with open(memory_run['json']) as f:
        info = json.load(f)['info']
    assert info['knn_image_num'] == K and info['bbox_max_aspect_ratio'] == 3.0


def test_disk_cache_and_resume_after_interruption(inputs, memory_run, tmp_path, monkeypatch):
    expected = _store_arrays(memory_run['store'])
    cfg = _cfg(inputs, tmp_path, 'corr_disk', embed_cache='disk', embed_dtype='float32')

    # 1) killed in phase 1, after the first chunk of embeddings was stored
    calls = dict(batch=0, chunk=0)
    orig_batch, orig_chunk = CorrespondenceLoop.process_batch, CorrespondenceLoop.process_chunk

    def failing_batch(self, data_batch):
        calls['batch'] += 1
        if calls['batch'] == 3:  # chunk 0 = batches 1-2 (3 images, batch size 2)
            raise KeyboardInterrupt('simulated kill in phase 1')
        return orig_batch(self, data_batch)

    monkeypatch.setattr(CorrespondenceLoop, 'process_batch', failing_batch)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, 'corr_disk_1')
    emb_root = osp.join(tmp_path, 'mining_cache', 'correspondence_embed')
    (emb_dir, ) = [osp.join(emb_root, d) for d in os.listdir(emb_root)]
    assert osp.exists(osp.join(emb_dir, 'chunk_000000.done.npz'))
    assert not osp.exists(osp.join(emb_dir, 'chunk_000001.done.npz'))

    # 2) killed in phase 2, after the first chunk of pairs
    calls['batch'] = 0

    def counting_batch(self, data_batch):
        calls['batch'] += 1
        return orig_batch(self, data_batch)

    def failing_chunk(self, indices):
        calls['chunk'] += 1
        if calls['chunk'] == 2:
            raise KeyboardInterrupt('simulated kill in phase 2')
        return orig_chunk(self, indices)

    monkeypatch.setattr(CorrespondenceLoop, 'process_batch', counting_batch)
    monkeypatch.setattr(CorrespondenceLoop, 'process_chunk', failing_chunk)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, 'corr_disk_2')
    # phase 1 redid only chunks 1 and 2 (images 3-7: 2 + 1 batches)
    assert calls['batch'] == 3

    # 3) the rerun finishes; nothing is encoded again, one pair chunk was cached
    calls.update(batch=0, chunk=0)
    monkeypatch.setattr(CorrespondenceLoop, 'process_chunk', lambda self, idx:
                        (calls.__setitem__('chunk', calls['chunk'] + 1), orig_chunk(self, idx))[1])
    runner, _ = _run(cfg, 'corr_disk_3')
    assert calls['batch'] == 0 and calls['chunk'] == 2
    assert not runner.test_loop.embeddings.in_memory
    got = _store_arrays(str(tmp_path / 'correspondence.orlstore'))
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)

    # disk cache holds exactly the in-memory embeddings
    mem = memory_run['runner'].test_loop.embeddings
    disk = runner.test_loop.embeddings
    for i in range(inputs['n']):
        e1, b1 = mem.get(i)
        e2, b2 = disk.get(i)
        np.testing.assert_array_equal(e1, e2)
        np.testing.assert_array_equal(b1, b2)


def test_pair_precision_on_a_hand_made_case(tmp_path):
    # image 0: a category-0 object at (0,0,10,10) and a category-1 one at (20,20,10,10);
    # image 1: a category-0 object at (50,50,10,10); image 2 has no ground truth.
    gt_b = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([[50, 50, 60, 60]], np.float32), None]
    gt_l = [np.array([0, 1]), np.array([0]), None]
    knn = np.array([[1, 2], [0, 2], [0, 1]])
    pairs = [
        [
            np.array([
                [0, 0, 10, 10, 50, 50, 10, 10],  # same category: correct
                [20, 20, 10, 10, 51, 50, 10, 10],  # both objects, categories 1 vs 0
                [100, 100, 10, 10, 50, 50, 10, 10]
            ]),  # query box is background
            np.array([[0, 0, 10, 10, 0, 0, 10, 10]])
        ],  # neighbour without GT: not scored
        [
            np.array([[50, 50, 10, 10, 1, 0, 10, 10]]),  # IoU 0.82 with cat-0 object: correct
            np.zeros((0, 8), int)
        ],
        [np.array([[0, 0, 5, 5, 0, 0, 5, 5]]),
         np.array([[0, 0, 5, 5, 0, 0, 5, 5]])],
    ]
    m = pair_precision(pairs, knn, gt_b, gt_l, iou_thr=0.5)
    assert {k: m[k] for k in ('pair_precision', 'pair_object_rate', 'scored_pairs')} == \
        dict(pair_precision=2 / 4, pair_object_rate=3 / 4, scored_pairs=4)
    # Random level: pairs drawn uniformly from the kept boxes, as many per neighbour as mined.
    # Image 0 keeps a cat-0, a cat-1 and a background box; image 1 a cat-0 and a background box.
    # Either direction: 1 of 6 box pairs is same-category, 2/3 x 1/2 of them are object-object.
    kept = [
        np.array([[0, 0, 10, 10], [20, 20, 10, 10], [100, 100, 10, 10]]),
        np.array([[50, 50, 10, 10], [200, 200, 10, 10]]),
        np.array([[0, 0, 5, 5]])
    ]
    r = pair_precision(pairs, knn, gt_b, gt_l, iou_thr=0.5, kept_boxes=kept)
    assert r['pair_precision'] == 2 / 4
    assert r['pair_precision_random'] == pytest.approx((3 / 6 + 1 / 6) / 4)
    assert r['pair_object_rate_random'] == pytest.approx((3 / 3 + 1 / 3) / 4)

    # the same through the metric: gathered results -> store + numbers
    metric = CorrespondenceMetric(out_file=str(tmp_path / 'c.orlstore'))
    metric.set_mining_params(
        dict(
            bbox_min_size=96,
            bbox_max_aspect_ratio=3,
            bbox_max_iou=0.5,
            intra_bbox_num=100,
            knn_image_num=2,
            knn_bbox_pair_ratio=0.1))
    results = []
    for i in (2, 0, 1):  # arrival order does not matter
        flat = np.concatenate(pairs[i]).reshape(-1, 8).astype(np.int32)
        r = dict(
            index=i,
            file_name=f'{i}.jpg',
            img_id=i + 1,
            kept_boxes=np.unique(flat[:, :4], axis=0),
            knn=knn[i],
            pairs=flat,
            pair_counts=np.array([len(p) for p in pairs[i]]))
        if gt_b[i] is not None:
            r.update(gt_bboxes=gt_b[i], gt_labels=gt_l[i])
        results.append(r)
    metric.process(None, results)
    out = metric.evaluate(3)
    assert out['correspondence/pair_precision'] == 0.5
    assert out['correspondence/num_pairs'] == 7
    s = MiningStore.open(str(tmp_path / 'c.orlstore'))
    assert s.num_images == 3 and s.file_name(1) == '1.jpg'
    np.testing.assert_array_equal(s.pairs(0, 0), pairs[0][0])
    assert s.num_pairs(1, 1) == 0


def test_proposal_dataset_checks_the_image_list(inputs, tmp_path):
    from mmpretrain.registry import DATASETS
    names, ids = inputs['names'], inputs['ids']
    short = str(tmp_path / 'short.orlstore')
    write_selective_search_store(
        short, [np.zeros((1, 4), np.int32)] * (len(names) - 1), file_names=names[:-1], image_ids=ids[:-1])
    ds = dict(
        type='ProposalDataset',
        ann_file='annotations/instances.json',
        data_root=inputs['root'],
        data_prefix=dict(img_path='images/'))
    with pytest.raises(ValueError, match=r'store has 7 images, the image list 8'):
        DATASETS.build(dict(ds, proposal_file=short))
    swapped = str(tmp_path / 'swapped.orlstore')
    write_selective_search_store(
        swapped, [np.zeros((1, 4), np.int32)] * len(names), file_names=[names[1], names[0]] + names[2:], image_ids=ids)
    with pytest.raises(ValueError, match=r'at position 0.*' + names[1]):
        DATASETS.build(dict(ds, proposal_file=swapped))
    good = DATASETS.build(dict(ds, proposal_file=inputs['ss_path']))
    info = good.get_data_info(5)
    np.testing.assert_array_equal(info['proposals'], MiningStore.open(inputs['ss_path']).boxes(5))
    assert info['file_name'] == names[5]


def test_crops_are_the_official_resized_crops():
    """crop_boxes == torchvision ``resized_crop`` on a PIL image (the official crop), in
    either channel order."""
    import torchvision.transforms.functional as TF
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 70, 50], [3, 4, 20, 40], [60, 45, 10, 5], [1, 1, 2, 3]])
    out = crop_boxes(img, boxes, 24)
    assert out.shape == (4, 24, 24, 3) and out.dtype == np.uint8
    pil = Image.fromarray(img)
    for k, (x, y, w, h) in enumerate(boxes.tolist()):
        ref = TF.resized_crop(pil, y, x, h, w, [24, 24])
        np.testing.assert_array_equal(out[k], np.asarray(ref))
    np.testing.assert_array_equal(crop_boxes(img[..., ::-1].copy(), boxes, 24), out[..., ::-1])
