"""OpenMMLab's ``.mim`` convention: where the package's configs, tools and model index are.

Like mmdet and mmpretrain, the package carries ``orl_plugin/.mim/{configs,tools,model-index.yml}``
(symlinks to the checkout's folders; a wheel holds copies), and ``mim`` finds a package's files at
``<site dir>/<distribution name or top-level module>/.mim``. A wheel install puts the package
there. An editable install (PEP 660) does not: its package stays in the checkout, so ``mim``
looks at a folder that does not exist. :func:`link_editable_install` makes it exist, as a symlink
``<site dir>/orl-plugin`` -> the checkout's package, which imports cannot pick up (the name has a
hyphen). ``make install`` runs it after ``pip install -e``; by hand::

    pip install -e . && python -m orl_plugin.utils.mim_files
"""
from __future__ import annotations

import json
import os
import os.path as osp
import sys
from importlib import metadata
from typing import List, Optional

__all__ = ['DIST_NAME', 'MIM_DIR', 'files_root', 'is_editable_install', 'link_editable_install']

DIST_NAME = 'orl-plugin'
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))  # orl_plugin/
MIM_DIR = osp.join(PACKAGE_DIR, '.mim')


def files_root() -> str:
    """The folder holding ``configs/``, ``tools/`` and ``model-index.yml``: the checkout the
    package runs from, else (a wheel install) the package's ``.mim`` folder."""
    checkout = osp.dirname(PACKAGE_DIR)
    if osp.isdir(osp.join(checkout, 'configs')) and osp.isdir(osp.join(checkout, 'tools')):
        return checkout
    return MIM_DIR


def is_editable_install(dist: metadata.Distribution) -> bool:
    """Whether ``dist`` was installed with ``pip install -e`` (its ``direct_url.json`` says so)."""
    text = dist.read_text('direct_url.json')
    return bool(text) and bool(json.loads(text).get('dir_info', {}).get('editable'))


def link_editable_install(dist: Optional[metadata.Distribution] = None) -> Optional[str]:
    """Give ``mim`` the package of an editable install: ``<site dir>/orl-plugin`` -> this package.

    Returns the link's path, or ``None`` when the install is not editable (a wheel needs none).
    Idempotent; an existing link is re-pointed, anything else at that path is left alone.
    """
    if dist is None:
        # From the checkout, its own ``orl_plugin.egg-info`` (left by the editable build) comes
        # first on sys.path; the installed distribution is the one that says it is editable.
        found = [d for d in metadata.distributions(name=DIST_NAME) if is_editable_install(d)]
        if not found:
            return None
        dist = found[0]
    elif not is_editable_install(dist):
        return None
    site_dir = str(dist.locate_file(''))
    link = osp.join(site_dir, DIST_NAME)
    if osp.islink(link):
        if os.readlink(link) == PACKAGE_DIR:
            return link
        os.remove(link)
    elif osp.exists(link):
        raise FileExistsError(f'{link} exists and is not a symlink; remove it so that mim can find '
                              f'the editable install at {PACKAGE_DIR}')
    os.symlink(PACKAGE_DIR, link, target_is_directory=True)
    return link


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m orl_plugin.utils.mim_files``: link an editable install for mim (see the module doc)."""
    import argparse
    argparse.ArgumentParser(
        prog='python -m orl_plugin.utils.mim_files', description=__doc__.split('\n\n')[1]).parse_args(argv)
    link = link_editable_install()
    if link is None:
        print(f'{DIST_NAME} is not an editable install; mim finds {MIM_DIR} as it is')
    else:
        print(f'mim: {link} -> {PACKAGE_DIR} (configs, tools and model index in {MIM_DIR})')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
