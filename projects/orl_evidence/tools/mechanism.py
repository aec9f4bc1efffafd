#!/usr/bin/env python
"""Command line of ``projects.orl_evidence.mechanism`` (../README.md): ``mechanism.py --help``."""
import os.path as osp
import sys

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))  # the repository root
sys.path.insert(0, ROOT)
from projects.orl_evidence.mechanism import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
