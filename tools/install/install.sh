#!/usr/bin/env bash
# One-command set-up of orl-plugin's virtual environment (called by `make install`).
#
# Idempotent: every step first checks whether its result is already there and skips
# itself if so; a second run with nothing changed takes seconds. Any failure stops the
# script and names the step that failed.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${ORL_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STEP="start"

step() { STEP="$1"; echo "==> [install] $1"; }
trap 'echo "ERROR: make install failed in step: ${STEP}" >&2' ERR

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
OPENCV_VERSION=5.0.0.93

step "find Python 3.11"
BASE_PY="${PYTHON:-}"
if [ -z "$BASE_PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      BASE_PY="$(command -v "$cand")"; break
    fi
  done
fi
[ -n "$BASE_PY" ] || { echo "Python 3.11 is required (torch ${TORCH_VERSION} wheels here are cp311); set PYTHON=" >&2; false; }

step "create virtual environment at $VENV"
if [ ! -x "$PY" ]; then
  "$BASE_PY" -m venv "$VENV"
fi
PIP=("$PY" -m pip --disable-pip-version-check)

step "install torch ${TORCH_VERSION} + torchvision ${TORCHVISION_VERSION}"
if ! "$PY" - <<PYEOF 2>/dev/null
import torch, torchvision
assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__
assert torchvision.__version__.split('+')[0] == '${TORCHVISION_VERSION}', torchvision.__version__
PYEOF
then
  "${PIP[@]}" install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
fi

step "install build tools (setuptools<70, wheel, ninja)"
# setuptools < 70: mmcv's setup.py and mmengine's `mmdet::` base resolution import pkg_resources.
if ! "$PY" -c 'import pkg_resources, setuptools, wheel, ninja; assert int(setuptools.__version__.split(".")[0]) < 70' 2>/dev/null; then
  "${PIP[@]}" install "setuptools<70" wheel ninja
fi

step "build mmcv ${MMCV_VERSION} with CPU ops (C++20 wrapper: tools/install/cxx20.sh)"
if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '${MMCV_VERSION}'" 2>/dev/null; then
  # --no-build-isolation: mmcv's setup.py imports the torch installed above.
  # pip caches the built wheel, so only the first install on a machine pays the ~7 min build.
  CXX="$ROOT/tools/install/cxx20.sh" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" \
    "${PIP[@]}" install --no-build-isolation "mmcv==${MMCV_VERSION}"
fi

step "install orl_plugin (editable) with its dependencies and test extra"
"${PIP[@]}" install -e "$ROOT[tests]"

step "re-pin setuptools<70 (torch's metadata asks for >=77, which drops what mmcv/mmengine use)"
# pip's resolver upgrades setuptools for torch's declared requirement during the editable install;
# setuptools 69 works with torch 2.14 here (STACK.md) and keeps pkg_resources for mmengine's `mmdet::` bases.
if ! "$PY" -c 'import pkg_resources, setuptools; assert int(setuptools.__version__.split(".")[0]) < 70' 2>/dev/null; then
  "${PIP[@]}" install "setuptools<70"
fi

step "install opencv-contrib-python-headless ${OPENCV_VERSION} (selective search)"
# mmengine depends on opencv-python, whose cv2 lacks the contrib modules; the contrib wheel
# installed last (same version, same cv2 folder) provides cv2.ximgproc.
if ! "$PY" -c 'import cv2; cv2.ximgproc.segmentation.createSelectiveSearchSegmentation' 2>/dev/null; then
  "${PIP[@]}" install --no-deps --force-reinstall "opencv-contrib-python-headless==${OPENCV_VERSION}"
fi

step "show the editable install to mim (configs, tools, model index: orl_plugin/.mim)"
# mim looks for <site-packages>/orl-plugin; a PEP 660 editable install has no such folder.
"$PY" -m orl_plugin.utils.mim_files

step "verify the environment"
"$PY" - <<'PYEOF'
import torch
import mmcv
from mmcv.ops import roi_align
import cv2
import orl_plugin  # noqa: F401  (registers every component)

feat = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
rois = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0], [1, 2.0, 2.0, 7.0, 7.0]])
out = roi_align(feat, rois, (2, 2), 1.0, 0, 'avg', True)
assert out.shape == (2, 3, 2, 2) and torch.isfinite(out).all(), 'mmcv.ops.roi_align failed'
ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
assert ss is not None, 'cv2.ximgproc.segmentation is missing'
print(f'torch {torch.__version__}, mmcv {mmcv.__version__}, cv2 {cv2.__version__}, orl_plugin {orl_plugin.__version__}: OK')
PYEOF
echo "==> [install] done"
