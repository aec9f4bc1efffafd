# Stage 2b on a folder of images for a CPU: ./selective-search_8workers_folder.py (long side at
# most 1024 px) with 2 loader workers, and chunks of 64 images (a crash loses at most one chunk).
_base_ = './selective-search_8workers_folder.py'

test_dataloader = dict(num_workers=2)
test_cfg = dict(chunk_size=64)
