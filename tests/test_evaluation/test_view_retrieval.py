"""Held-out view retrieval: the views it cuts, the score of a known feature map, the hook."""
import os
import os.path as osp

import numpy as np
import pytest
from helpers import ROOT
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmpretrain.registry import HOOKS

from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.engine.hooks.view_retrieval_hook import training_view_pipelines
from orl_plugin.evaluation.view_retrieval import effective_rank, make_view_pairs, view_retrieval

CPU_CFG = osp.join(ROOT, 'configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py')


def _views(colours, noise=5, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([np.clip(rng.normal(c, noise, (size, size, 3)), 0, 255) for c in colours]).astype(np.uint8)


def test_retrieval_scores_a_known_feature_map(colour_model):
    # Colours far apart on the sphere of normalised mean colours: each view's nearest other view is its twin.
    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10)]
    v1, v2 = _views(colours, seed=1), _views(colours, seed=2)
    model = colour_model.train()
    res = view_retrieval(model, (v1, v2))
    assert res['top1'] == 1.0 and res['chance'] == 0.25 and res['num_images'] == 4
    assert 1.5 < res['rank'] <= 3.0  # mean colours: at most 3 directions, here more than one used
    assert model.training  # restored after the eval-mode forward
    assert view_retrieval(model, (v1, v2[::-1].copy()))['top1'] == 0.0  # every twin moved: nothing retrieved
    # Two images that look alike: each direction finds the pair's first image for both, so half of them.
    same = [(250, 10, 10), (250, 10, 10), (10, 10, 250), (10, 250, 10)]
    half = view_retrieval(model, (_views(same, noise=0), _views(same, noise=0)))
    assert half['top1'] == 0.75
    # A collapsed network, one output for every input, scores chance.
    flat = np.full((4, 8, 8, 3), 128, np.uint8)
    collapsed = view_retrieval(model, (flat, flat))
    assert collapsed['top1'] == 0.25 and collapsed['chance'] == 0.25
    assert collapsed['rank'] == 1.0
    with pytest.raises(ValueError, match='equally long'):
        view_retrieval(model, (v1, v2[:3]))


def test_effective_rank_counts_the_directions_used():
    import torch

    # Four equally spread orthogonal directions, around a shared offset that is not one of them.
    four = torch.cat([torch.eye(4), -torch.eye(4)]) + 10.0
    assert effective_rank(four) == pytest.approx(4.0, rel=1e-6)
    assert effective_rank(torch.ones(6, 4)) == 1.0  # one output for every input: collapsed
    assert effective_rank(torch.ones(6, 4) + 1e-6 * torch.eye(6, 4)) == 1.0  # rounding noise is no spread
    # Two directions, one holding 3/4 of the variance: exp of the entropy of (0.75, 0.25).
    two = torch.tensor([[3**0.5, 0.0], [-3**0.5, 0.0], [0.0, 1.0], [0.0, -1.0]])
    expect = float(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))
    assert effective_rank(two) == pytest.approx(expect, rel=1e-6)
    # Squeezing all but 4 of 64 directions of random features leaves about 4.
    g = torch.Generator().manual_seed(0)
    full = torch.randn(512, 64, generator=g)
    squeezed = full.clone()
    squeezed[:, 4:] *= 0.01
    assert effective_rank(full) > 50 and 4.0 < effective_rank(squeezed) < 4.5


def test_view_pairs_are_seeded_and_leave_the_training_rng_alone(tmp_path):
    root = str(tmp_path / 'scenes')
    make_synthetic_scenes(root, 4, seed=0, img_size=(64, 64), workers=1)
    paths = [osp.join(root, 'images', f) for f in sorted(os.listdir(osp.join(root, 'images')))]
    cfg = Config.fromfile(CPU_CFG)
    pipes = [cfg.view_pipeline1, cfg.view_pipeline2]
    for p in pipes:
        p[0]['scale'] = 32
    np.random.seed(123)
    expect_next = np.random.rand()
    np.random.seed(123)
    a1, b1 = make_view_pairs(paths, pipes, seed=0)
    assert np.random.rand() == expect_next  # the global generator the training draws from is untouched
    a2, b2 = make_view_pairs(paths, pipes, seed=0)
    a3, _ = make_view_pairs(paths, pipes, seed=1)
    assert a1.shape == (4, 32, 32, 3) and a1.dtype == np.uint8
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    assert not np.array_equal(a1, a3) and not np.array_equal(a1, b1)
    with pytest.raises(ValueError, match='two view pipelines'):
        make_view_pairs(paths, pipes[:1])
    pipes[1][0]['scale'] = 16
    with pytest.raises(ValueError, match='differ in size'):
        make_view_pairs(paths, pipes)


def test_hook_reads_the_training_views_and_turns_off_on_bad_data(tmp_path, colour_model):
    cfg = Config.fromfile(CPU_CFG)
    first, second = training_view_pipelines(cfg)
    assert first == cfg.view_pipeline1 and second == cfg.view_pipeline2
    one_pipeline = Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    type='RepeatDataset',
                    dataset=dict(pipeline=[dict(type='MultiView', num_views=[2], transforms=[cfg.view_pipeline1])])))))
    assert training_view_pipelines(one_pipeline) == [cfg.view_pipeline1] * 2
    assert training_view_pipelines(Config(dict(train_dataloader=dict(dataset=dict(pipeline=[]))))) is None
    image_views = Config(
        dict(train_dataloader=dict(dataset=dict(pipeline=[dict(type='ImageViews', pipelines=[first, second])]))))
    assert training_view_pipelines(image_views) == [first, second]  # the COCO stage-1 config's transform

    root = str(tmp_path / 'scenes')
    make_synthetic_scenes(root, 5, seed=0, img_size=(64, 64), workers=1)  # 1 val image
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        hook = HOOKS.build(
            dict(
                type='ViewRetrievalHook',
                dataset=dict(
                    data_root=root, ann_file='annotations/instances_val.json', data_prefix=dict(img_path='images/'))))

    class _Runner:
        model = colour_model
        logger = MMLogger.get_instance('view_test')
        epoch = 0
        max_epochs = 1
        train_loop = None

    _Runner.cfg = cfg
    hook.before_train(_Runner())  # warns and turns off instead of stopping the training
    assert 'instances_val.json' in hook.disabled_reason and 'at least 2' in hook.disabled_reason
    hook.after_train_epoch(_Runner())  # stays off, no error
    with pytest.raises(ValueError, match='max_images'):
        HOOKS.build(dict(type='ViewRetrievalHook', dataset=dict(), max_images=1))


def test_nan_features_are_counted_and_the_hook_warns(tmp_path, diverged_model, hook_runner):
    import torch

    from orl_plugin.evaluation.object_probe import count_nonfinite
    feats = torch.ones(4, 3)
    feats[1, 2] = float('nan')
    feats[3, 0] = float('inf')
    assert count_nonfinite(feats, torch.ones(2, 3)) == 2

    v = _views([(250, 10, 10), (10, 250, 10), (10, 10, 250)])
    res = view_retrieval(diverged_model, (v, v))  # scores, does not raise
    assert res['num_nonfinite'] == 6 and np.isnan(res['rank'])

    root = str(tmp_path / 'scenes')
    make_synthetic_scenes(root, 10, seed=0, img_size=(64, 64), workers=1)  # 2 val images
    cfg = Config.fromfile(CPU_CFG)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        hook = HOOKS.build(
            dict(
                type='ViewRetrievalHook',
                dataset=dict(
                    data_root=root, ann_file='annotations/instances_val.json', data_prefix=dict(img_path='images/'))))
    runner = hook_runner(diverged_model, cfg)
    hook.before_train(runner)  # the training goes on; the log says why the scores mean nothing
    warnings = [m for level, m in runner.logger.records if level == 'warning']
    assert len(warnings) == 1 and '4 of 4 view features are NaN/inf' in warnings[0]
    assert np.isnan(runner.scalars[0]['probe/view_rank']) and hook.disabled_reason is None
