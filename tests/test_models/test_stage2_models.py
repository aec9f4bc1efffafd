"""Stage 2 from any stage-1 model: the model-side feature components and pair rule, 2a and 2c from
BYOL, MoCo v2, classifier and ViT checkpoints, and the refusal of a checkpoint of another layout.

Tiny models (ResNet-18 with 16 base channels, a 2-layer ViT on 32 px) on the shared 8-image
synthetic scenes; the step configs are the shipped synthetic stage-2 configs with overrides.
"""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import ROOT
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

import orl_plugin  # noqa: F401  (registers everything)
from orl_plugin.models import ImageFeature, RoIFeature, TopRatioPairs
from orl_plugin.models.feature_utils import pool_last
from orl_plugin.store import MiningStore, write_selective_search_store
from orl_plugin.utils.checkpoint import CheckpointFormatError

KNN_CONFIG = osp.join(ROOT, 'configs/orl/stage2/knn_byol-resnet18_1xb64_synthetic.py')
CORR_CONFIG = osp.join(ROOT, 'configs/orl/stage2/correspondence_byol-resnet18_1xb64_synthetic.py')

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
SELFSUP_PRE = dict(type='SelfSupDataPreprocessor', mean=MEAN, std=STD, to_rgb=True)
RESNET = dict(
    type='ResNet', depth=18, stem_channels=16, base_channels=16, norm_cfg=dict(type='BN'), zero_init_residual=False)
C = 128  # channels of the tiny ResNet-18's last stage


def _vit(out_type='cls_token'):
    return dict(
        type='VisionTransformer',
        img_size=32,
        patch_size=8,
        out_type=out_type,
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64))


def _projector(in_channels, avg_pool=True, **kw):
    return dict(
        type='NonLinearNeck',
        in_channels=in_channels,
        hid_channels=64,
        out_channels=32,
        num_layers=2,
        with_bias=True,
        with_last_bn=False,
        with_avg_pool=avg_pool,
        **kw)


def _byol(backbone=RESNET, in_channels=C, avg_pool=True):
    return dict(
        type='BYOL',
        base_momentum=0.01,
        data_preprocessor=SELFSUP_PRE,
        backbone=backbone,
        neck=_projector(in_channels, avg_pool),
        head=dict(type='LatentPredictHead', predictor=_projector(32, False), loss=dict(type='CosineSimilarityLoss')))


CONTRASTIVE_HEAD = dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'), temperature=0.2)
STAGE1 = dict(
    byol=_byol(),
    mocov2=dict(
        type='MoCo',
        queue_len=32,
        feat_dim=32,
        momentum=0.001,
        data_preprocessor=SELFSUP_PRE,
        backbone=RESNET,
        head=CONTRASTIVE_HEAD,
        neck=dict(type='MoCoV2Neck', in_channels=C, hid_channels=64, out_channels=32, with_avg_pool=True)),
    classifier=dict(
        type='ImageClassifier',
        backbone=RESNET,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=8, in_channels=C),
        data_preprocessor=dict(type='ClsDataPreprocessor', mean=MEAN, std=STD, to_rgb=True)),
    vit=_byol(_vit(), 32, avg_pool=False),
)
# Only through the components (building is cheap, a run per kind is not needed).
MORE_STAGE1 = dict(
    simclr=dict(
        type='SimCLR', data_preprocessor=SELFSUP_PRE, backbone=RESNET, neck=_projector(C), head=CONTRASTIVE_HEAD),
    simsiam=dict(
        type='SimSiam',
        data_preprocessor=SELFSUP_PRE,
        backbone=RESNET,
        neck=_projector(C),
        head=dict(type='LatentPredictHead', predictor=_projector(32, False), loss=dict(type='CosineSimilarityLoss'))),
    densecl=dict(
        type='DenseCL',
        queue_len=32,
        feat_dim=32,
        momentum=0.001,
        loss_lambda=0.5,
        data_preprocessor=SELFSUP_PRE,
        backbone=RESNET,
        head=CONTRASTIVE_HEAD,
        neck=dict(type='DenseCLNeck', in_channels=C, hid_channels=64, out_channels=32, num_grid=None)),
    vit_avg_featmap=_byol(_vit('avg_featmap'), 32, avg_pool=False),
    vit_featmap=_byol(_vit('featmap'), 32, avg_pool=True),
)


def _build(cfg, seed=0):
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def _images(n=4, size=32, seed=0):
    """uint8 (n, size, size, 3) images in the loader's BGR order."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _normalised(imgs):
    """What every stage-1 config's preprocessor does: BGR -> RGB, (x - mean) / std, NCHW."""
    x = torch.from_numpy(imgs[..., ::-1].copy()).permute(0, 3, 1, 2).float()
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def _pooled(feat, backbone):
    """The pooled backbone feature of each architecture, written out."""
    if feat.dim() == 4:  # ResNet, ViT 'featmap': global average pool
        return feat.mean(dim=(2, 3))
    return feat  # ViT 'cls_token' / 'avg_featmap': the ViT's own choice


@pytest.mark.parametrize('kind', sorted({**STAGE1, **MORE_STAGE1}))
def test_features_follow_the_documented_rule(kind):
    model = _build({**STAGE1, **MORE_STAGE1}[kind])
    imgs = _images()
    x = _normalised(imgs)
    with torch.no_grad():
        feats = model.backbone(x)
        pooled = F.normalize(_pooled(feats[-1], model.backbone), dim=1)
        # 2a: the projector output of a self-supervised model (DenseCL: its global one, [0]);
        # the pooled backbone feature of a classifier (its pooling neck is no projector)
        image_ref = pooled if kind == 'classifier' else F.normalize(model.neck(feats)[0], dim=1)
        got = ImageFeature()(model, dict(inputs=torch.from_numpy(imgs).permute(0, 3, 1, 2), data_samples=None))
        torch.testing.assert_close(got, image_ref, rtol=1e-5, atol=1e-6)
        assert ImageFeature().modules(model) == (('backbone', ) if kind == 'classifier' else ('backbone', 'neck'))
        # 2c: the pooled backbone feature for every kind, never the projector
        torch.testing.assert_close(RoIFeature()(model, imgs, batch_size=3), pooled, rtol=1e-5, atol=1e-6)
        backbone_only = ImageFeature(feature='backbone')(model,
                                                         dict(
                                                             inputs=torch.from_numpy(imgs).permute(0, 3, 1, 2),
                                                             data_samples=None))
        torch.testing.assert_close(backbone_only, pooled, rtol=1e-5, atol=1e-6)


def test_roi_feature_is_bit_identical_to_the_official_feature():
    """Normalise, backbone, average pool, L2 (the released ``Correspondence.forward_test``), on
    the same crops: equal to the last bit, whatever the batching (so 2c's pairs do not move)."""
    model = _build(STAGE1['byol'])
    crops = _images(n=7, size=32, seed=3)
    with torch.no_grad():
        feat = model.backbone(_normalised(crops))[-1]
        ref = F.normalize(F.adaptive_avg_pool2d(feat, 1).flatten(1), dim=1)
        for bs in (7, 3):
            assert torch.equal(RoIFeature()(model, crops, batch_size=bs), ref)
        one = RoIFeature()(model, crops[:1], batch_size=1)  # padded to two: the batched kernels
        assert torch.equal(one, ref[:1])


def test_vit_raw_tokens_pool_the_patch_tokens():
    model = _build(_byol(_vit('raw'), 32, avg_pool=False))
    imgs = _images()
    with torch.no_grad():
        tokens = model.backbone(_normalised(imgs))[-1]  # (N, 1 + 16, C): class token first
        assert tokens.shape[1] == 17 and model.backbone.num_extra_tokens == 1
        torch.testing.assert_close(RoIFeature()(model, imgs), F.normalize(tokens[:, 1:].mean(dim=1), dim=1))
    with pytest.raises(ValueError, match=r'shape \(2, 3, 4, 5, 6\)'):
        pool_last((torch.zeros(2, 3, 4, 5, 6), ), model.backbone)


def test_feature_options_and_interface_errors():
    classifier = _build(STAGE1['classifier'])
    with pytest.raises(AttributeError, match="ImageClassifier has none.*feature='auto'"):
        ImageFeature(feature='neck').modules(classifier)
    with pytest.raises(ValueError, match='feature must be one of'):
        ImageFeature(feature='projector')

    class _NoInterface(torch.nn.Module):
        backbone = None

    with pytest.raises(AttributeError, match='_NoInterface has no data_preprocessor, extract_feat'):
        RoIFeature().check(_NoInterface())


def test_top_ratio_pairs_rule():
    rule = TopRatioPairs(ratio=0.25)
    assert [rule.num_pairs(b) for b in (1, 3, 4, 9)] == [1, 1, 1, 2]
    emb_q = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]]), dim=1)
    emb_n = emb_q[[1, 0]]  # the query's first box matches the neighbour's second, and so on
    bq = np.arange(16).reshape(4, 4)
    bn = 100 + np.arange(8).reshape(2, 4)
    pairs = rule(emb_q, emb_n, bq, bn)
    # B = 4 boxes -> 1 pair; two pairs tie at cosine 1: the smaller flat index (q0, n1) wins
    np.testing.assert_array_equal(pairs, [np.r_[bq[0], bn[1]]])
    assert pairs.dtype == np.int32
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        TopRatioPairs(ratio=0)


# --------------------------------------------------------------------------------------------
# the steps, from each stage-1 kind's checkpoint
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def scenes(synthetic_scenes, tmp_path_factory):
    """The shared scenes, random raw boxes as their selective-search store, and a checkpoint of
    each stage-1 kind."""
    root = synthetic_scenes['out_dir']
    out = tmp_path_factory.mktemp('stage2_models')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        from mmpretrain.registry import DATASETS
        images = DATASETS.build(
            dict(
                type='SceneImageDataset',
                data_root=root,
                ann_file='annotations/instances.json',
                data_prefix=dict(img_path='images/')))
    infos = [images.get_data_info(i) for i in range(len(images))]
    rng = np.random.default_rng(0)
    boxes = []
    for _ in infos:
        xy = rng.integers(0, 40, (30, 2))
        boxes.append(np.concatenate([xy, np.minimum(rng.integers(16, 64, (30, 2)), 64 - xy)], 1))
    ss = write_selective_search_store(
        str(out / 'ss.orlstore'),
        boxes,
        file_names=[i['file_name'] for i in infos],
        image_ids=[i['img_id'] for i in infos])
    ckpts = {}
    for kind, cfg in STAGE1.items():
        ckpts[kind] = str(out / f'{kind}.pth')
        torch.save({'state_dict': _build(cfg).state_dict()}, ckpts[kind])
    return dict(root=root, out=out, ss=ss, ckpts=ckpts, n=len(infos))


def _step(config, model, ckpt, work_dir, options):
    cfg = Config.fromfile(config)
    cfg.model = ConfigDict(model)
    cfg.custom_hooks = []  # the stage-1 probes are training hooks
    cfg.merge_from_dict({
        'work_dir': str(work_dir), 'load_from': ckpt, 'log_level': 'WARNING',
        'experiment_name': osp.basename(str(work_dir)), 'test_dataloader.batch_size': 4,
        'test_dataloader.num_workers': 0, 'test_cfg.chunk_size': 4, **options
    })
    return Runner.from_cfg(cfg).test()


def _knn(scenes, kind, model, ckpt):
    out = str(scenes['out'] / f'knn_{kind}.orlstore')
    metrics = _step(
        KNN_CONFIG,
        model,
        ckpt,
        scenes['out'] / f'w_knn_{kind}',
        {
            'test_dataloader.dataset.data_root': scenes['root'],
            'test_dataloader.dataset.ann_file': 'annotations/instances.json',
            'test_dataloader.dataset.pipeline.1.scale': 36,
            'test_dataloader.dataset.pipeline.2.crop_size': 32,
            'test_cfg.feature': 'auto',  # the shipped config says 'neck': a classifier has none
            'test_evaluator.out_file': out,
            'test_evaluator.k': 3
        })
    return out, metrics


def _correspondence(scenes, kind, model, ckpt, knn):
    out = str(scenes['out'] / f'corr_{kind}.orlstore')
    metrics = _step(
        CORR_CONFIG, model, ckpt, scenes['out'] / f'w_corr_{kind}', {
            'test_dataloader.dataset.data_root': scenes['root'],
            'test_dataloader.dataset.ann_file': 'annotations/instances.json',
            'test_dataloader.dataset.proposal_file': scenes['ss'], 'test_dataloader.dataset.pipeline.1.min_size': 16,
            'test_dataloader.dataset.pipeline.2.size': 32, 'test_cfg.knn_file': knn, 'test_cfg.knn_image_num': 3,
            'test_cfg.embed_cache': 'memory', 'test_evaluator.out_file': out
        })
    return out, metrics


@pytest.mark.parametrize('kind', sorted(STAGE1))
def test_2a_and_2c_from_each_kind_of_stage1_checkpoint(scenes, kind):
    knn, metrics = _knn(scenes, kind, STAGE1[kind], scenes['ckpts'][kind])
    n = scenes['n']
    assert metrics['knn/num_images'] == n
    k = np.asarray(MiningStore.open(knn).array('knn'))
    assert k.shape == (n, 3) and not (k == np.arange(n)[:, None]).any()
    corr, metrics = _correspondence(scenes, kind, STAGE1[kind], scenes['ckpts'][kind], knn)
    store = MiningStore.open(corr)
    assert metrics['correspondence/num_images'] == n and store.params['knn_bbox_pair_ratio'] == 0.1
    np.testing.assert_array_equal(np.asarray(store.array('knn')), k)
    for i in range(n):
        kept = {tuple(b) for b in store.boxes(i).tolist()}
        for j, nb in enumerate(k[i]):
            p = store.pairs(i, j)
            assert len(p) == max(1, int(0.1 * len(kept)))
            assert {tuple(b) for b in p[:, :4].tolist()} <= kept
            assert {tuple(b) for b in p[:, 4:].tolist()} <= {tuple(b) for b in store.boxes(int(nb)).tolist()}


def test_a_checkpoint_of_another_layout_is_refused(scenes):
    sd = torch.load(scenes['ckpts']['byol'], weights_only=True)['state_dict']
    knn = str(scenes['out'] / 'unused_knn.orlstore')
    # the official OpenSelfSup layout: the backbone under online_net.0.
    official = str(scenes['out'] / 'official_layout.pth')
    torch.save({'state_dict': {k.replace('backbone.', 'online_net.0.', 1): v for k, v in sd.items()}}, official)
    with pytest.raises(CheckpointFormatError) as err:
        _correspondence(scenes, 'bad', STAGE1['byol'], official, knn)
    msg = str(err.value)
    assert msg.startswith(official + ':') and 'backbone.*' in msg
    assert 'backbone.conv1.weight' in msg and 'online_net.0.' in msg and 'missing' in msg
    # a backbone without the projector 2a reads
    backbone_only = str(scenes['out'] / 'backbone_only.pth')
    torch.save({'state_dict': {k: v for k, v in sd.items() if k.startswith('backbone.')}}, backbone_only)
    with pytest.raises(
            CheckpointFormatError, match=r'backbone_only\.pth: .*backbone\.\*, neck\.\*'
            r'.*missing \(e\.g\. neck\.'):
        _knn(scenes, 'bad', STAGE1['byol'], backbone_only)
    # another width: same keys, other shapes
    wide = str(scenes['out'] / 'wide.pth')
    torch.save({'state_dict': _build(_byol(dict(RESNET, base_channels=32), 256)).state_dict()}, wide)
    with pytest.raises(
            CheckpointFormatError, match=r'wide\.pth: .*have other shapes \(e\.g\. '
            r'backbone\.layer1'):
        _correspondence(scenes, 'bad', STAGE1['byol'], wide, knn)
