"""``orl-pipeline folder``: a folder of the user's images, end to end on the CPU; the recipe choice; the
probes and scores that need ground truth switching themselves off; the timing benchmark's --quick."""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from orl_plugin import pipeline as pl
from orl_plugin.pipeline import Pipeline, PipelineError, PipelineOptions
from orl_plugin.pipeline.presets import FOLDER_PRESETS, folder_recipe

ROOT = pl.repo_root()
BAD = ('truncated.jpg', 'empty.jpg', 'notanimage.png')


@pytest.fixture(scope='module')
def photo_folder(mixed_images, tmp_path_factory):
    """The ``mixed_images`` debris (10 readable files of every kind, 3 bad ones) plus 6 small photos
    in a sub-folder (the listing is recursive), so that every image has 10 readable neighbours."""
    from helpers import scene_picture
    folder = tmp_path_factory.mktemp('photos') / 'my photos'  # a space in the path, as users have
    shutil.copytree(mixed_images['folder'], folder)
    (folder / 'more').mkdir()
    for i in range(6):
        Image.fromarray(scene_picture(128, 96, 20 + i)).save(folder / 'more' / f'extra_{i}.jpg', quality=90)
    return str(folder)


# ----------------------------------------------------------------------------- recipe, checks
def test_folder_recipe_follows_the_device():
    assert folder_recipe(1, 'none', cuda=False)[0] == 'folder-cpu'
    assert folder_recipe(8, 'pytorch', cuda=True)[0] == 'folder-gpu'
    assert folder_recipe(16, 'slurm', cuda=False)[0] == 'folder-gpu'  # the launching node may have no GPU
    assert folder_recipe(0, 'none', cuda=True) == ('folder-cpu', '--gpus 0')
    for preset in FOLDER_PRESETS:
        label, configs = pl.resolve_configs(preset)
        assert sorted(configs) == sorted(s.name for s in pl.STAGES if not s.optional)
    cpu, gpu = (pl.resolve_configs(p)[1] for p in ('folder-cpu', 'folder-gpu'))
    for stage in ('selective_search', ):
        for c in (cpu, gpu):
            assert pl.load_config(c[stage])['test_dataloader']['dataset']['pipeline'][1]['max_size'] == 1024
    # the GPU recipe keeps the COCO box filter and crops; the CPU one the filter, with crops at its view size
    for c, crop in ((gpu, 224), (cpu, 96)):
        filt, crops = pl.load_config(c['correspondence'])['test_dataloader']['dataset']['pipeline'][1:3]
        assert filt['min_size'] == 96 and crops['size'] == crop


@pytest.mark.parametrize('preset', sorted(FOLDER_PRESETS))
def test_both_recipes_list_the_folder(preset, photo_folder):
    """--data-root moves every image list of both recipes (the GPU one cannot run here) onto the folder."""
    from mmengine.config import Config

    from orl_plugin.datasets.scene_dataset import scene_data_infos
    configs = pl.resolve_configs(preset)[1]
    for stage in ('stage1', 'selective_search'):
        cfg = Config.fromfile(configs[stage])
        cfg.merge_from_dict(dict(item.split('=', 1) for item in pl.data_root_options(configs[stage], photo_folder)))
        loader = cfg.get('train_dataloader') or cfg.test_dataloader
        infos = scene_data_infos(loader.dataset)
        assert len(infos) == 19 and infos[0]['img_path'] == osp.join(photo_folder, 'cmyk.jpg'), stage
        assert infos[-1]['file_name'] == 'truncated.jpg' and 'gt_bboxes' not in infos[0]
    for stage in ('knn', 'correspondence', 'stage3'):  # the same list (2c and 3: beside a store)
        items = pl.data_root_options(configs[stage], photo_folder)
        assert any(i.endswith(f'data_prefix.img_path={photo_folder}/') for i in items), (stage, items)


def test_folder_checks(photo_folder, tmp_path):
    with pytest.raises(PipelineError, match='--data-root DIR'):
        Pipeline(PipelineOptions('folder', work_dir=str(tmp_path / 'w')))
    with pytest.raises(PipelineError, match='no detection fine-tune'):
        Pipeline(PipelineOptions('folder-cpu', data_root=photo_folder, work_dir=str(tmp_path), finetune=True))
    few = tmp_path / 'few'
    few.mkdir()
    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(few / f'{i}.png')
    with pytest.raises(PipelineError, match='holds 5 image files.*at least 11'):
        Pipeline(PipelineOptions('folder-cpu', data_root=str(few), work_dir=str(tmp_path / 'w')))
    # one batch per rank of each training stage, before anything runs (stage 3 only sees fewer images)
    for i in range(5, 20):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(few / f'{i}.png')
    # a small folder trains with the batch one epoch fills, and says so
    pipe = Pipeline(PipelineOptions('folder-cpu', data_root=str(few), work_dir=str(tmp_path / 'w')))
    assert pipe.fitted_batches == {'stage1': (32, 20)}
    assert pipe.stage_options['stage1'][-1] == 'train_dataloader.batch_size=20'
    # a batch the user gives is kept, and refused when the folder cannot fill it
    with pytest.raises(PipelineError) as err:
        Pipeline(
            PipelineOptions(
                'folder-cpu',
                data_root=str(few),
                work_dir=str(tmp_path / 'w'),
                cfg_options=['stage1:train_dataloader.batch_size=32']))
    assert str(err.value) == (
        f'{few} holds 20 image files (searched recursively for .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp); '
        'stage1 needs at least 32 for one batch of train_dataloader.batch_size=32 per rank on 1 rank (drop_last=True; '
        'a smaller batch: --cfg-options stage1:train_dataloader.batch_size=N)')
    with pytest.raises(
            PipelineError,
            match='stage3 needs at least 31 for one batch of train_dataloader.batch_size=16 '
            'per rank on 2 ranks'):
        Pipeline(
            PipelineOptions(
                'folder-cpu',
                data_root=str(few),
                work_dir=str(tmp_path / 'w'),
                gpus=2,
                cfg_options=['stage1:train_dataloader.batch_size=8', 'stage3:train_dataloader.batch_size=16']))
    Pipeline(
        PipelineOptions(
            'folder-cpu',
            data_root=str(few),
            work_dir=str(tmp_path / 'w'),
            cfg_options=['train_dataloader.batch_size=8']))
    with pytest.raises(PipelineError, match='inside the image folder'):
        Pipeline(PipelineOptions('folder', data_root=str(few), work_dir=str(few / 'w')))
    # the stores' paths reach the stages through --cfg-options, which drops spaces
    with pytest.raises(PipelineError, match='space, comma'):
        Pipeline(PipelineOptions('folder-cpu', data_root=photo_folder, work_dir=str(tmp_path / 'my run')))


def _clean_list(folder: str, out: str) -> str:
    """The readable images of ``folder`` as tools/analysis_tools/check_images.py --out writes them."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('check_images',
                                                  osp.join(ROOT, 'tools', 'analysis_tools', 'check_images.py'))
    check_images = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_images)
    assert check_images.main([folder, '--workers', '1', '--out', out]) == 0
    return out


def test_image_list_reaches_every_stage(photo_folder, tmp_path, capsys):
    """--image-list: each stage's command reads the clean list (its ann_file), from the folder, and the
    data sets built from those commands list exactly its 16 readable images."""
    from mmengine.config import Config

    from orl_plugin.datasets.scene_dataset import scene_data_infos
    clean = _clean_list(photo_folder, str(tmp_path / 'clean.json'))
    capsys.readouterr()
    work = str(tmp_path / 'w')
    batch = 'train_dataloader.batch_size=8'  # the CPU recipe's 32 and 16 need more images than 16
    assert pl.main([
        'folder-cpu', '--data-root', photo_folder, '--work-dir', work, '--image-list', clean, '--dry-run',
        '--cfg-options', batch
    ]) == 0
    out = capsys.readouterr().out
    stages = [s.name for s in pl.STAGES if not s.optional]
    for stage in stages:
        (line, ) = [ln for ln in out.splitlines() if ln.startswith(f'[pipeline] {stage}: ')]
        loader = 'train_dataloader' if stage in ('stage1', 'stage3') else 'test_dataloader'
        assert f'{loader}.dataset.ann_file={clean}' in line, line
    assert '16 image files under' in out  # the list's images, not the folder's 19 files

    pipe = pl.Pipeline(
        pl.PipelineOptions(
            'folder-cpu', data_root=photo_folder, work_dir=work, image_list=clean, dry_run=True, cfg_options=[batch]))
    pipe.run()
    readable = sorted(set(_names_in(photo_folder)) - set(BAD))
    for stage in stages:
        cfg = Config.fromfile(pipe.configs[stage])
        cfg.merge_from_dict(dict(item.split('=', 1) for item in pipe._options(stage, pipe._inputs(stage)[1])))
        dataset = (cfg.get('train_dataloader') or cfg.test_dataloader).dataset
        # stage 3 and 2c read their image list beside a store: build that list alone
        infos = scene_data_infos({k: dataset[k] for k in ('ann_file', 'data_root', 'data_prefix')})
        assert sorted(i['file_name'] for i in infos) == readable, stage
        assert all(osp.dirname(i['img_path']).startswith(pipe.data_root_arg()) for i in infos), stage


def _names_in(folder: str) -> list:
    return [osp.relpath(osp.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs]


def test_image_list_checks_and_fingerprint(photo_folder, tmp_path):
    import json
    clean = _clean_list(photo_folder, str(tmp_path / 'clean.json'))
    opts = dict(
        preset_or_dir='folder-cpu',
        data_root=photo_folder,
        work_dir=str(tmp_path / 'w'),
        cfg_options=['train_dataloader.batch_size=8'])
    fp = Pipeline(PipelineOptions(**opts, image_list=clean))._fingerprint('selective_search', None, [])
    assert Pipeline(PipelineOptions(**opts))._fingerprint('selective_search', None, []) != fp
    (tmp_path / 'clean.json.d').mkdir()  # a folder without the listed images
    content = json.load(open(clean))
    content['images'] = content['images'][1:]
    json.dump(content, open(clean, 'w'))
    assert Pipeline(PipelineOptions(**opts, image_list=clean))._fingerprint('selective_search', None, []) != fp
    with pytest.raises(PipelineError, match='names 15 images, 15 of them missing under'):
        Pipeline(PipelineOptions(**dict(opts, data_root=str(tmp_path / 'clean.json.d')), image_list=clean))
    with pytest.raises(PipelineError, match='--image-list .*nothing.json: no such file'):
        Pipeline(PipelineOptions(**opts, image_list=str(tmp_path / 'nothing.json')))
    # COCO+ reads two folders: one list cannot say which of them an image is in
    with pytest.raises(
            PipelineError, match='--image-list gives one image folder, but train_dataloader.dataset reads 2'):
        Pipeline(PipelineOptions('coco-plus', work_dir=str(tmp_path / 'w2'), image_list=clean))


def test_folder_content_joins_the_fingerprint(photo_folder, tmp_path):
    """Images added to the folder make every stage stale: the stores index the image list by position."""
    data = tmp_path / 'data'
    shutil.copytree(photo_folder, data)
    opts = dict(
        preset_or_dir='folder-cpu',
        data_root=str(data),
        work_dir=str(tmp_path / 'w'),
        cfg_options=['train_dataloader.batch_size=8'])
    p = Pipeline(PipelineOptions(**opts))
    fp = p._fingerprint('selective_search', None, [])
    assert Pipeline(PipelineOptions(**opts))._fingerprint('selective_search', None, []) == fp
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(data / 'more' / 'new.png')
    again = Pipeline(PipelineOptions(**opts))
    assert again.folder['num_files'] == p.folder['num_files'] + 1
    assert again._fingerprint('selective_search', None, []) != fp


# ----------------------------------------------------------------------------- probes without ground truth
def test_object_probe_turns_off_on_a_folder_with_one_line(photo_folder, colour_model, hook_runner, recording_logger):
    from orl_plugin.engine.hooks import ObjectProbeHook
    folder = dict(ann_file='', data_prefix=dict(img_path=photo_folder))
    hook = ObjectProbeHook(reference=folder, query=folder, interval=1)
    runner = hook_runner(colour_model)
    hook.before_train(runner)
    hook.after_train_epoch(runner)
    assert len(recording_logger.records) == 1
    level, msg = recording_logger.records[0]
    assert level == 'warning' and 'object probe turned off' in msg and photo_folder in msg
    assert 'no annotation file' in msg and runner.scalars == []


def test_view_retrieval_uses_the_training_images_without_a_split(photo_folder, colour_model, hook_runner,
                                                                 recording_logger):
    from orl_plugin.engine.hooks import ViewRetrievalHook
    crop = [dict(type='RandomResizedCrop', scale=16, backend='pillow')]
    cfg = dict(
        train_dataloader=dict(
            dataset=dict(
                type='SceneImageDataset',
                ann_file='',
                data_prefix=dict(img_path=photo_folder),
                pipeline=[
                    dict(type='LoadImageOrSkip'),
                    dict(type='MultiView', num_views=[1, 1], transforms=[crop, crop])
                ])))
    hook = ViewRetrievalHook(dataset=None, interval=1)
    runner = hook_runner(colour_model, cfg)
    hook.before_train(runner)
    (w_level, warning), (i_level, line) = recording_logger.records
    assert w_level == 'warning' and warning.startswith('view retrieval: left out 3 unreadable image(s)')
    assert all(name in warning for name in BAD)
    assert i_level == 'info' and 'on 16 training (no held-out split) images' in line
    assert runner.scalars[0]['probe/view_chance'] == pytest.approx(1 / 16)


# ----------------------------------------------------------------------------- end to end
TINY = [
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    # one batch of the 19 files: the epoch reads every file (training drops a partial last batch)
    'stage1:train_dataloader.batch_size=19',
    *[f'stage1:train_dataloader.dataset.pipeline.1.transforms.{v}.0.scale=32' for v in (0, 1)],
    '2b:test_dataloader.dataset.pipeline.1.max_size=320',  # the 3000x2000 photo: a quick search
    '2c:test_dataloader.dataset.pipeline.1.min_size=24',
    '2c:test_dataloader.dataset.pipeline.2.size=32',
    '2c:test_dataloader.batch_size=8',
    'stage3:train_dataloader.batch_size=4',
    *[f'stage3:train_dataloader.dataset.pipeline.1.img_pipelines.{v}.0.scale=32' for v in (0, 1)],
    *[f'stage3:train_dataloader.dataset.pipeline.1.patch_pipelines.{v}.0.size=16' for v in (0, 1)],
]


def _log(work_dir, stage):
    with open(osp.join(work_dir, stage, 'pipeline_stage.log'), errors='replace') as f:
        return f.read()


@pytest.mark.timeout(600)
def test_folder_command_end_to_end_on_the_cpu(photo_folder, tmp_path, capsys, monkeypatch):
    """The command a user types, on a folder with every kind of debris: five stages run, the bad files are
    skipped and named, the scores that need ground truth say once that they are off, and the run ends
    with the demo's table, summary.json and pictures. (Five stage processes: their imports alone take
    about 35 CPU s of the test's time.)"""
    from orl_plugin.store import MiningStore
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # tiny tensors: a second intra-op thread only waits (conftest)
    work = str(tmp_path / 'run')
    argv = [
        'folder', '--data-root', photo_folder, '--gpus', '0', '--work-dir', work, '--quiet', '--schedule', 'stage1=1',
        'stage3=1', '--cfg-options', *TINY
    ]
    assert pl.main(argv) == 0
    out = capsys.readouterr().out
    assert 'folder: the folder-cpu recipe (--gpus 0' in out
    assert '19 image files under' in out

    # the summary: the demo's table, pictures and summary.json
    assert f'[pipeline] ORL on the images under {photo_folder} (folder-cpu)' in out
    row = re.search(r'unreadable images \(skipped\)\s+3: (.*)', out)
    assert row and all(name in row.group(1) for name in BAD)
    assert re.search(r'scores needing ground truth\s+off \(no annotations\)', out)
    assert 'KNN category precision@10' not in out and 'fine-tuned' not in out
    summary = json.load(open(osp.join(work, 'summary.json')))
    assert summary['ground_truth'] is False and summary['data']['images'] == 19
    assert sorted(s['file_name'] for s in summary['skipped_images']) == sorted(BAD)
    assert summary['stage1_view_retrieval_chance'] == pytest.approx(1 / 16)
    assert summary['stage1_view_feature_rank'] > 0 and summary['num_pairs'] > 0
    for key in ('stage1_checkpoint', 'stage3_checkpoint'):
        assert osp.isfile(summary[key])
    pngs = summary['images']
    assert len(pngs) == 6 and any('proposals_' in p for p in pngs) and any('pairs_' in p for p in pngs)
    for p in pngs:
        assert osp.dirname(p) == work and Image.open(p).size[0] >= 16
    corr = MiningStore.open(summary['stages']['correspondence']['outputs']['store'])
    skipped = {corr.file_name(int(s['index'])) for s in corr.skipped}
    assert skipped == set(BAD)
    example = int(re.search(r'proposals_(\d+)', pngs[0]).group(1))
    assert corr.file_name(example) not in BAD

    # each score that needs ground truth is switched off with one line; the probe without a split says so
    for stage, score in (('knn', 'category precision'), ('selective_search', 'proposal recall'), ('correspondence',
                                                                                                  'pair precision')):
        log = _log(work, stage)
        assert log.count(f'no image has ground-truth boxes, so {score} is not scored') == 1, stage
        assert 'Traceback' not in log
    # the bad files are named, never a traceback
    stage1 = _log(work, 'stage1')
    assert 'Traceback' not in stage1
    # (the folder's path has a space, which --cfg-options cannot carry: the stages read it through a link)
    link = osp.join(work, 'data_root')
    assert os.readlink(link) == photo_folder
    assert all(f'skipped unreadable image {osp.join(link, name)} (' in stage1 for name in BAD)
    assert 'on 16 training (no held-out split) images' in stage1
    assert all(name in _log(work, 'selective_search').split('images skipped:')[1] for name in BAD)

    # a second run skips every stage and reports again
    assert pl.main(argv) == 0
    again = capsys.readouterr().out
    assert again.count('already done') == 5 and 'summary.json' in again


def test_folder_timing_quick_writes_its_json(tmp_path):
    """``--quick``: ten stage runs in one process (runner set-up is most of its ~40 CPU s)."""
    out = tmp_path / 'timing.json'
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable,
         osp.join(ROOT, 'tools', 'benchmarks', 'folder_timing.py'), '--quick', '--out',
         str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result['quick'] and result['num_images'] == [12, 16] and result['preset'] == 'folder-cpu'
    assert set(result['stages']) == {'stage1', 'knn', 'selective_search', 'correspondence', 'stage3'}
    for r in result['stages'].values():
        assert set(r['cpu_s']) == {'12', '16'} and all(v > 0 for v in r['cpu_s'].values())
    assert result['stages']['stage1']['recipe_epochs'] == 30
    assert result['reference_search']['generated']['boxes_per_image'] > 0
    assert '| stage | per 1,000 images' in proc.stdout
