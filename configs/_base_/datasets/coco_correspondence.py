# ORL stage 2c on COCO train2017 (RoI pair retrieval), paper settings: boxes >= 96 px, aspect ratio
# <= 3, greedy IoU <= 0.5, first 100 boxes per image; 224 px bilinear crops; online backbone +
# global average pool + L2; k = 10 neighbours; top max(1, int(0.1 * B)) pairs.
# Every image's boxes are encoded ONCE (phase 1, cached on disk under the work dir, resumable),
# then pairs are matched from the cached embeddings (phase 2); the official release instead
# re-encodes each neighbour for every query (about 11x the forwards).
# Inputs: data/coco/orl/selective_search.orlstore and data/coco/orl/knn.orlstore (2b, 2a),
# native stores or the official JSON files. Output: data/coco/orl/correspondence.orlstore.
_base_ = './coco_mining.py'

test_pipeline = [
    _base_.image_loader,
    dict(type='FilterBoxes', min_size=96, max_ratio=3.0, max_iou=0.5, topk=100),
    dict(type='CropBoxes', size=224),
]
test_dataloader = dict(
    batch_size=4,  # images per data batch (up to 400 crops)
    pin_memory=False,
    # one sample = a variable number of crops: keep lists, the loop concatenates them
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='ProposalDataset', proposal_file='orl/selective_search.orlstore', pipeline=test_pipeline))
test_cfg = dict(
    type='CorrespondenceLoop',
    knn_file=_base_.data_root + 'orl/knn.orlstore',
    knn_image_num=10,
    # RoI feature: pooled backbone output of each crop (orl_plugin/models/roi_feature.py); pair rule:
    # the top max(1, int(topk_bbox_ratio * B)) entries of the similarity matrix (top_ratio_pairs.py).
    roi_feature=dict(type='RoIFeature'),
    pair_rule=dict(type='TopRatioPairs'),
    topk_bbox_ratio=0.1,
    encode_batch_size=64,  # RoI crops per backbone forward
    embed_cache='disk',
    # float32 keeps the pairs exactly those of the official fp32 procedure; float16 halves the
    # cache (at most about 48 GB instead of 97 GB for COCO train2017: 100 boxes of 2048-d per image).
    embed_dtype='float32',
    chunk_size=512)
test_evaluator = dict(
    type='CorrespondenceMetric', out_file=_base_.data_root + 'orl/correspondence.orlstore',
    json_file=None)  # e.g. data_root + 'orl/correspondence.json' to also write the official JSON
