#!/usr/bin/env python
"""Run the whole ORL pipeline with one command (the rules: orl_plugin/pipeline/).

    python tools/pipeline.py synthetic --finetune          # CPU demo scale
    python tools/pipeline.py coco --gpus 8                 # stage by stage through tools/dist_*.sh
    python tools/pipeline.py coco --launcher slurm --partition PART --gpus 16
    python tools/pipeline.py my_configs/ --from 2c         # a directory with stage1.py ... stage3.py
"""
from orl_plugin.pipeline import main
from orl_plugin.utils.error_policy import run_cli

if __name__ == '__main__':
    run_cli(main)
