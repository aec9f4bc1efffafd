"""Held-out view retrieval: the views it cuts, the score of a known feature map, the hook."""
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

from mmpretrain.registry import HOOKS
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.engine.hooks.view_retrieval_hook import training_view_pipelines
from orl_plugin.evaluation.view_retrieval import make_view_pairs, view_retrieval

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CPU_CFG = osp.join(REPO, 'configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py')


def _views(colours, noise=5, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([np.clip(rng.normal(c, noise, (size, size, 3)), 0, 255) for c in colours]).astype(np.uint8)


def test_retrieval_scores_a_known_feature_map(colour_model):
    # Colours far apart on the sphere of normalised mean colours: each view's nearest other view is its twin.
    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10)]
    v1, v2 = _views(colours, seed=1), _views(colours, seed=2)
    model = colour_model.train()
    res = view_retrieval(model, (v1, v2))
    assert res == dict(top1=1.0, chance=0.25, num_images=4)
    assert model.training  # restored after the eval-mode forward
    assert view_retrieval(model, (v1, v2[::-1].copy()))['top1'] == 0.0  # every twin moved: nothing retrieved
    # Two images that look alike: each direction finds the pair's first image for both, so half of them.
    same = [(250, 10, 10), (250, 10, 10), (10, 10, 250), (10, 250, 10)]
    half = view_retrieval(model, (_views(same, noise=0), _views(same, noise=0)))
    assert half['top1'] == 0.75
    # A collapsed network, one output for every input, scores chance.
    flat = np.full((4, 8, 8, 3), 128, np.uint8)
    assert view_retrieval(model, (flat, flat)) == dict(top1=0.25, chance=0.25, num_images=4)
    with pytest.raises(ValueError, match='equally long'):
        view_retrieval(model, (v1, v2[:3]))


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
    one_pipeline = Config(dict(train_dataloader=dict(dataset=dict(type='RepeatDataset', dataset=dict(
        pipeline=[dict(type='MultiView', num_views=[2], transforms=[cfg.view_pipeline1])])))))
    assert training_view_pipelines(one_pipeline) == [cfg.view_pipeline1] * 2
    assert training_view_pipelines(Config(dict(train_dataloader=dict(dataset=dict(pipeline=[]))))) is None

    root = str(tmp_path / 'scenes')
    make_synthetic_scenes(root, 5, seed=0, img_size=(64, 64), workers=1)  # 1 val image
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        hook = HOOKS.build(dict(type='ViewRetrievalHook', dataset=dict(
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
