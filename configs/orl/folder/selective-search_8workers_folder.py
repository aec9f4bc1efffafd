# Stage 2b on a folder of images: selective search as on COCO (../stage2/selective-search_coco.py:
# fast mode, 8 loader workers per rank) on a copy whose long side is at most 1024 px, the boxes
# scaled back to the original pixels (why 1024: ../README.md). The COCO configs keep full resolution, as the paper.
# Output: <folder>/orl/selective_search.orlstore (the pipeline writes into its work dir instead).
_base_ = '../stage2/selective-search_coco.py'

data_root = 'data/images/'
test_pipeline = [_base_.test_pipeline[0], dict(_base_.test_pipeline[1], max_size=1024)]
test_dataloader = dict(dataset=dict(**_base_.image_folder, pipeline=test_pipeline))
test_evaluator = dict(out_file=data_root + 'orl/selective_search.orlstore')
