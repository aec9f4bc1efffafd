#!/usr/bin/env python
"""Command line of ``projects.orl_evidence.stage3_arms`` (../README.md): ``stage3_arms.py --help``."""
import os.path as osp
import sys

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))  # the repository root
sys.path.insert(0, ROOT)
from projects.orl_evidence.stage3_arms import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
