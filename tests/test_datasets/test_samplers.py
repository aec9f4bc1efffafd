"""The pre-training samplers on several ranks: no image twice in an epoch, the same number of steps on
every rank, and the same epoch as one rank with the whole batch, for data set sizes that do not divide."""
import glob
import os.path as osp
from typing import List, Set

import pytest
from helpers import ROOT
from mmengine.config import Config
from mmengine.dataset import DefaultSampler

from orl_plugin.datasets import EvenShardSampler


def _rank_indices(sampler_cls, n: int, world: int, epoch: int, monkeypatch, **kwargs) -> List[List[int]]:
    """Each rank's indices of one epoch, as that rank's sampler gives them."""
    import mmengine.dataset.sampler as sampler_module
    out = []
    for rank in range(world):
        monkeypatch.setattr(sampler_module, 'get_dist_info', lambda r=rank: (r, world))
        sampler = sampler_cls(list(range(n)), shuffle=True, seed=7, **kwargs)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert len(indices) == len(sampler)
        out.append(indices)
    return out


def _batches(indices: List[int], batch: int, drop_last: bool = True) -> List[List[int]]:
    """A data loader's batches (the pre-training configs drop the last partial one)."""
    end = len(indices) - batch + 1 if drop_last else len(indices)
    return [indices[i:i + batch] for i in range(0, max(end, 0), batch)]


SIZES = [n for n in range(1, 41)] + [97, 100, 129, 1001]


@pytest.mark.parametrize('drop_last', [True, False])
@pytest.mark.parametrize('world', [2, 3, 4, 8])
@pytest.mark.parametrize('batch', [1, 2, 3, 5])
def test_ranks_take_the_batches_of_one_rank_with_the_whole_batch(world, batch, drop_last, monkeypatch):
    for n in SIZES:
        for epoch in (0, 1):
            ranks = _rank_indices(EvenShardSampler, n, world, epoch, monkeypatch)
            # every rank the same number of images, all different: at most world - 1 left out
            assert {len(r) for r in ranks} == {n // world}, (n, world)
            seen = [i for r in ranks for i in r]
            assert len(seen) == len(set(seen)), f'{n} images on {world} ranks: an image twice in epoch {epoch}'
            assert n - len(seen) == n % world
            # the loader's steps: as many on every rank (no rank waits for a step the others never take)
            steps = [_batches(r, batch, drop_last) for r in ranks]
            assert len({len(s) for s in steps}) == 1
            together: List[Set[int]] = [set().union(*(s[k] for s in steps)) for k in range(len(steps[0]))]
            # one rank, batch world * batch, same seed: the same images in the same steps
            (whole, ) = _rank_indices(DefaultSampler, n, 1, epoch, monkeypatch)
            one = [set(b) for b in _batches(whole, world * batch, drop_last)]
            if drop_last:
                assert together == one, (n, world, batch, epoch)
            else:  # the same full steps; the last n % world images of the order are left out
                full = [s for s in together if len(s) == world * batch]
                assert full == one[:len(full)], (n, world, batch, epoch)
                assert set().union(*together) == set(whole[:world * (n // world)])


def test_every_image_is_seen_over_the_epochs(monkeypatch):
    n, world, batch = 37, 4, 3  # 37 // 12 = 3 steps of 12 images: one left out every epoch
    seen: Set[int] = set()
    for epoch in range(30):
        ranks = _rank_indices(EvenShardSampler, n, world, epoch, monkeypatch)
        seen.update(i for r in ranks for b in _batches(r, batch) for i in b)
    assert seen == set(range(n))


def test_default_sampler_repeats_images(monkeypatch):
    """Why the configs do not use mmengine's DefaultSampler: it pads an epoch with repeats, and with
    drop_last they can be trained on (10 images, 4 ranks of 3: 4 steps-worth of images, 2 of them twice)."""
    ranks = _rank_indices(DefaultSampler, 10, 4, 0, monkeypatch)
    seen = [i for r in ranks for b in _batches(r, 3) for i in b]
    assert len(seen) == 12 and len(set(seen)) == 10
    # and round_up=False gives ranks unequal numbers of steps (3, 3, 2, 2 images: 1, 1, 0, 0 steps of 3)
    ranks = _rank_indices(DefaultSampler, 10, 4, 0, monkeypatch, round_up=False)
    assert [len(_batches(r, 3)) for r in ranks] == [1, 1, 0, 0]


def _pretraining_configs() -> List[str]:
    paths = []
    for pattern in ('byol/*.py', 'mocov2/*.py', 'orl/stage3/*.py', 'orl/folder/byol_*.py', 'orl/folder/orl_*.py'):
        paths += glob.glob(osp.join(ROOT, 'configs', pattern))
    return sorted(paths)


@pytest.mark.parametrize('path', _pretraining_configs(), ids=lambda p: osp.relpath(p, osp.join(ROOT, 'configs')))
def test_pretraining_configs_use_it(path):
    sampler = Config.fromfile(path).train_dataloader.sampler
    assert sampler.type == 'EvenShardSampler' and sampler.get('shuffle', True)


def test_the_too_small_check_names_what_it_needs(monkeypatch):
    """A data set too small for one batch per rank stops with the number of images that makes one
    (orl_plugin.utils.stack_fixes): 8 for batches of 4 on 2 ranks, as this sampler cuts 7 images to 3 per rank."""
    import mmengine.dataset.sampler as sampler_module
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader

    from orl_plugin.utils.stack_fixes import dataloader as stack_fix
    for rank in (0, 1):
        monkeypatch.setattr(sampler_module, 'get_dist_info', lambda r=rank: (r, 2))
        monkeypatch.setattr(stack_fix, 'get_dist_info', lambda r=rank: (r, 2))
        for n, makes_a_batch in ((7, False), (8, True)):
            loader = DataLoader(
                list(range(n)),
                batch_size=4,
                sampler=EvenShardSampler(list(range(n)), shuffle=True, seed=0),
                drop_last=True,
                collate_fn=pseudo_collate)
            assert (len(loader) > 0) == makes_a_batch
            if makes_a_batch:
                stack_fix.check_makes_a_batch(loader)
            else:
                with pytest.raises(stack_fix.NoBatchError, match='needs at least 8 images'):
                    stack_fix.check_makes_a_batch(loader)
