"""Unreadable images never stop a stage: training skips, counts and names them (and stops when
they are too many); the mining steps name them in the log and in their stores."""
import glob
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from helpers import BYOL_SYNTHETIC_CONFIG, ROOT, tiny_byol_overrides
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.bad_images import DEFAULT_MAX_BAD_FRACTION, TooManyBadImagesError, too_many_bad
from orl_plugin.store import MiningStore, write_correspondence_store

STAGE3_CONFIG = osp.join(ROOT, 'configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py')
STAGE2 = osp.join(ROOT, 'configs/orl/stage2')
SIZES = {'exif_rotated.jpg': (160, 96), 'tiny.png': (20, 15), 'large.jpg': (3000, 2000)}


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def _load_train_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('orl_tools_train', osp.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _names(mixed):
    return sorted(mixed['good'] + list(mixed['bad']))


def _slim(cfg) -> None:
    """A ResNet-18 of 16 base channels: these tests are about the data, not the network."""
    if cfg.model.get('backbone'):
        cfg.model.backbone.update(stem_channels=16, base_channels=16)
        cfg.model.neck.in_channels = 128


def _train(cfg):
    """Train ``cfg`` slimmed; return its dataset and its log after checking the two iterations."""
    _slim(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    assert np.isfinite(runner.message_hub.get_scalar('train/loss').current())
    return runner.train_dataloader.dataset, _log_text(runner)


def _log_text(runner) -> str:
    return ''.join(open(p).read() for p in glob.glob(osp.join(runner.log_dir, '*.log')))


def _folder_dataset(folder, **kw):
    return DATASETS.build(
        dict(
            type='SceneImageDataset',
            data_prefix=dict(img_path=folder),
            pipeline=[
                dict(type='LoadImageOrSkip'),
                dict(type='RandomResizedCrop', scale=16, backend='pillow'),
                dict(type='PackInputs')
            ],
            **kw))


def test_loader_workers_share_one_tally(mixed_images):
    """Two data-loader workers: every bad file is counted once, in the main process's tally."""
    ds = _folder_dataset(mixed_images['folder'], max_bad_fraction=0.5)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=pseudo_collate)
    np.random.seed(0)
    seen = sum(len(batch['inputs']) for batch in loader)
    assert seen == len(ds) == 13  # every bad sample was replaced by a readable one
    bad = {osp.basename(ds.get_data_info(int(i))['img_path']) for i in ds.bad_images.bad_indices()}
    assert bad == set(mixed_images['bad'])
    assert ds.bad_images.num_read == 13
    kinds = {
        osp.basename(ds.get_data_info(int(i))['img_path']): ds.bad_images.kind(int(i))
        for i in ds.bad_images.bad_indices()
    }
    assert kinds == mixed_images['bad']


def _mostly_bad(mixed, tmp_path):
    folder = tmp_path / 'mostly_bad'
    folder.mkdir()
    for name in ('photo.jpg', 'photo.png'):
        shutil.copy(osp.join(mixed['folder'], name), folder / name)
    for k in range(3):
        for name in mixed['bad']:
            shutil.copy(osp.join(mixed['folder'], name), folder / f'{k}_{name}')
    return str(folder)


def _named(message: str, folder: str) -> list:
    """The files of ``folder`` an error message names after 'Unreadable:'."""
    listed = message.split('Unreadable:')[1]
    return sorted(n for n in os.listdir(folder) if osp.join(folder, n) + ' (' in listed)


def test_a_mostly_bad_folder_stops_naming_every_bad_file(mixed_images, tmp_path):
    """9 of 11 files bad: the default rule stops at the sixth bad file read (more than half of 11 are
    then bad for sure), reads the images it has not met and names all nine, not only those read."""
    folder = _mostly_bad(mixed_images, tmp_path)
    bad = sorted(n for n in os.listdir(folder) if n[0].isdigit())
    ds = _folder_dataset(folder)
    with pytest.raises(TooManyBadImagesError, match='max_bad_fraction=0.5') as err:
        for i in range(len(ds)):
            ds[i]
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith('SceneImageDataset: 9 of its 11 images cannot be read (82%)'), message
    assert 'check_images.py' in message and '--image-list' in message
    assert _named(message, folder) == bad
    assert 'photo' not in message.split('Unreadable:')[1]
    # The same through two loader workers sharing one tally.
    ds = _folder_dataset(folder)
    loader = torch.utils.data.DataLoader(ds, batch_size=11, num_workers=2, collate_fn=pseudo_collate)
    with pytest.raises(TooManyBadImagesError) as err:
        next(iter(loader))
    assert _named(str(err.value), folder) == bad


def test_a_wrong_path_stops_early_with_one_line(tmp_path, capsys):
    """An image list whose files are all missing (a wrong data_prefix): stage 1 through tools/train.py
    stops after 42 reads, far before half of the 200 images (Hoeffding's margin at 1e-9), and its one
    line names the missing files."""
    import json

    from orl_plugin.utils.error_policy import run_cli
    train = _load_train_tool()
    images = [dict(id=i, file_name=f'img_{i:03d}.jpg', width=64, height=64) for i in range(200)]
    ann = tmp_path / 'list.json'
    ann.write_text(json.dumps(dict(images=images, categories=[])))
    argv = [
        BYOL_SYNTHETIC_CONFIG, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', f'train_dataloader.dataset.ann_file={ann}',
        f'train_dataloader.dataset.data_prefix.img_path={tmp_path}/wrong/', 'custom_hooks=[]'
    ]
    with pytest.raises(SystemExit) as exit_:
        run_cli(train.main, argv)
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: SceneImageDataset: 200 of its 200 images cannot be '
                                                   'read (100%), more than max_bad_fraction=0.5'), err
    assert f'{tmp_path}/wrong/img_000.jpg (unreadable)' in lines[0] and 'and 180 more' in lines[0]
    assert out.count('skipped unreadable image') == 42


def test_the_rule():
    rule = too_many_bad
    assert not rule(3, 13, 13, DEFAULT_MAX_BAD_FRACTION)  # a few broken files: never
    assert not rule(15, 30, 30, 0.5) and rule(16, 16, 30, 0.5)  # more than half of 30, certain
    assert not rule(41, 41, 10**6, 0.5) and rule(42, 42, 10**6, 0.5)  # every read fails: caught early
    assert not rule(42, 42, 10**6, 0.5, sampled=False)  # list order (mining): only when certain
    assert not rule(10**6, 10**6, 10**6, None)


def test_stage1_trains_through_a_mixed_folder(mixed_images, tmp_path, one_thread):
    """3 broken files of 13, the default rule: stage 1 trains, naming each once."""
    cfg = Config.fromfile(BYOL_SYNTHETIC_CONFIG)
    cfg.merge_from_dict(tiny_byol_overrides('', max_epochs=2, batch_size=13))
    cfg.merge_from_dict({
        'train_dataloader.dataset.ann_file': '',
        'train_dataloader.dataset.data_prefix': dict(img_path=mixed_images['folder']),
        'train_dataloader.dataset.pipeline.0': dict(type='LoadImageOrSkip'), 'work_dir': str(tmp_path / 'work'),
        'log_level': 'WARNING'
    })
    cfg.custom_hooks = []  # the probes read the synthetic scenes
    ds, log = _train(cfg)
    for name in mixed_images['bad']:  # each named once, with its reason
        path = osp.join(mixed_images['folder'], name)
        assert log.count(f'skipped unreadable image {path} (') == 1, log
    assert '3 bad of ' in log and 'images read so far' in log
    assert ds.bad_images.num_bad == 3


def _stage3_store(mixed, path, knn_offsets=(1, 2, 3)):
    """A correspondence store over the mixed folder (its files in folder order). The bad files
    have boxes too: files that broke after mining. photo.jpg has a box partly outside its 160x120
    pixels and one wholly outside."""
    names = _names(mixed)
    boxes, pairs = [], []
    for name in names:
        w, h = SIZES.get(name, (160, 120))
        b = [[0, 0, min(w, 64), min(h, 48)], [w // 4, h // 4, w // 2, h // 2]]
        if name == 'photo.jpg':
            b += [[140, 100, 50, 50], [400, 400, 10, 10]]
        boxes.append(np.array(b))
    n = len(names)
    knn = np.array([[(i + d) % n for d in knn_offsets] for i in range(n)])
    for i in range(n):
        pairs.append([np.concatenate([boxes[i][1], boxes[j][1]])[None] for j in knn[i]])
    return write_correspondence_store(path, boxes, knn, pairs, file_names=names, image_ids=list(range(n)))


def test_stage3_trains_through_a_mixed_folder(mixed_images, tmp_path, one_thread):
    store = _stage3_store(mixed_images, str(tmp_path / 'corr.orlstore'))
    cfg = Config.fromfile(STAGE3_CONFIG)
    dl = cfg.train_dataloader
    dl.update(batch_size=13, num_workers=0, persistent_workers=False)
    dl.sampler.shuffle = False
    dl.dataset.update(
        data_root='', ann_file='', data_prefix=dict(img_path=mixed_images['folder']), correspondence_file=store)
    views = dl.dataset.pipeline[1]
    for p in views.img_pipelines:
        p[0]['scale'] = 32
    for p in views.patch_pipelines:
        p[0]['size'] = 16
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2)
    cfg.param_scheduler = []
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10)
    cfg.update(work_dir=str(tmp_path / 'work'), log_level='WARNING')
    ds, log = _train(cfg)
    assert ds.bad_images.num_bad == 3
    for name in mixed_images['bad']:
        assert log.count(f'skipped unreadable image {osp.join(mixed_images["folder"], name)} (') == 1
    # photo.jpg was drawn as a query in both epochs: its box partly outside was clipped, the one
    # wholly outside never drawn, and reported once, naming it.
    photo = osp.join(mixed_images['folder'], 'photo.jpg')
    assert log.count(f'dropped 1 of 5 kept boxes and RoI pairs of image {photo}: wholly outside '
                     'its 160x120 pixels') == 1, log
    assert ds.num_dropped_boxes >= 2  # once per draw of photo.jpg


def test_stage3_threshold(mixed_images, tmp_path):
    """The same rule in stage 3: 3 bad files of 13 go on by default; above a limit of 10 % the stop names
    all three, whichever it met first."""
    store = _stage3_store(mixed_images, str(tmp_path / 'corr.orlstore'))
    cfg = dict(type='ORLDataset', data_prefix=dict(img_path=mixed_images['folder']), correspondence_file=store)
    ds = DATASETS.build(dict(cfg, pipeline=[]))
    bad = [k for k in range(len(ds)) if osp.basename(ds.get_data_info(k)['img_path']) in mixed_images['bad']]
    np.random.seed(0)
    for k in bad:
        assert ds[k]['img_path'] not in mixed_images['bad']  # another sample
    ds = DATASETS.build(dict(cfg, pipeline=[], max_bad_fraction=0.1))
    with pytest.raises(TooManyBadImagesError, match='ORLDataset: 3 of its 13 images cannot be read') as err:
        for k in range(len(ds)):
            ds[k]
    assert _named(str(err.value), mixed_images['folder']) == sorted(mixed_images['bad'])


def _run_step(config, folder, work_dir, out, **options):
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({
        'test_dataloader.dataset.data_root': '', 'test_dataloader.num_workers': 0, 'test_evaluator.out_file': out,
        **options
    })
    cfg.test_dataloader.dataset.update(ann_file='', data_prefix=dict(img_path=folder))
    cfg.update(work_dir=work_dir, log_level='WARNING', custom_hooks=[])
    _slim(cfg)
    runner = Runner.from_cfg(cfg)
    runner.test()
    return _log_text(runner)


def test_mining_steps_name_the_skipped_files(mixed_images, tmp_path, one_thread):
    folder = mixed_images['folder']
    bad = sorted(mixed_images['bad'])
    ss = str(tmp_path / 'ss.orlstore')
    knn = str(tmp_path / 'knn.orlstore')
    corr = str(tmp_path / 'corr.orlstore')
    logs = dict(
        selective_search=_run_step(
            osp.join(STAGE2, 'selective-search_synthetic.py'), folder, str(tmp_path / 'w_ss'), ss,
            **{'test_dataloader.dataset.pipeline.1.max_size': 256}),
        knn=_run_step(
            osp.join(STAGE2, 'knn_byol-resnet18_1xb64_synthetic.py'), folder, str(tmp_path / 'w_knn'), knn,
            **{'test_evaluator.k': 3}),
        correspondence=_run_step(
            osp.join(STAGE2, 'correspondence_byol-resnet18_1xb64_synthetic.py'), folder, str(tmp_path / 'w_corr'), corr,
            **{
                'test_dataloader.dataset.proposal_file': ss, 'test_cfg.knn_file': knn, 'test_cfg.knn_image_num': 3,
                'test_dataloader.dataset.pipeline.2.size': 32
            }))
    for step, path in (('selective_search', ss), ('knn', knn), ('correspondence', corr)):
        line = [ln for ln in logs[step].splitlines() if '3 images skipped:' in ln]
        assert len(line) == 1, (step, logs[step][-3000:])
        for name in bad:
            assert osp.join(folder, name) in line[0], (step, line)
        store = MiningStore.open(path)
        assert sorted(s['file_name'] for s in store.skipped) == bad, step
        assert all(s['reason'] for s in store.skipped)


def test_a_mining_step_stops_on_a_mostly_bad_folder(mixed_images, tmp_path, one_thread):
    """The same rule in the mining steps: selective search over 9 bad files of 11, in chunks of 4, stops
    after its second chunk (8 bad: more than half of 11 for sure) and names all nine, the one in the
    chunk it never computed too."""
    folder = _mostly_bad(mixed_images, tmp_path)
    with pytest.raises(TooManyBadImagesError) as err:
        _run_step(
            osp.join(STAGE2, 'selective-search_synthetic.py'), folder, str(tmp_path / 'w_ss'),
            str(tmp_path / 'ss.orlstore'),
            **{'test_dataloader.dataset.pipeline.1.max_size': 64, 'test_cfg.chunk_size': 4})
    message = str(err.value)
    assert message.startswith('[selective_search]: 9 of its 11 images cannot be read (82%)'), message
    assert _named(message, folder) == sorted(n for n in os.listdir(folder) if n[0].isdigit())
    assert not osp.exists(tmp_path / 'ss.orlstore')
