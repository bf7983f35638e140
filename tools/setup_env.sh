#!/usr/bin/env bash
# Set up the pinned OpenMMLab stack in ./.venv (idempotent).
#
# Why a script: no mmcv wheel exists for current PyTorch, and mmcv 2.1.0's
# setup.py does not compile against torch >= 2.10 headers (it forces -std=c++17).
# We build mmcv from the PyPI sdist with -std=c++20 once, cache the wheel under
# $HST_MM_CACHE (default ~/.cache/hst_mm), keyed by torch version and CUDA flavour,
# and reuse it on every later setup.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HST_MM_VENV:-$ROOT/.venv}"
CACHE="${HST_MM_CACHE:-$HOME/.cache/hst_mm}"
PYTHON="${PYTHON:-python3}"

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
SETUPTOOLS_VERSION=80.9.0
MMENGINE_VERSION=0.10.7
MMCV_VERSION=2.1.0
MMDET_VERSION=3.3.0
MMSEG_VERSION=1.2.2
TIMM_VERSION=1.0.31
OPENMIM_VERSION=0.3.9

log() { printf '[setup] %s\n' "$*"; }

# A stamp of everything that decides the environment: if it matches, there is nothing to do.
STAMP_SRC="$(cat "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" "$ROOT/requirements.txt" 2>/dev/null | sha256sum | cut -c1-16)"
STAMP="$VENV/.hst_mm_stamp"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_SRC" ] && [ -x "$VENV/bin/python" ]; then
  log "environment up to date ($VENV)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

log "installing torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION, setuptools $SETUPTOOLS_VERSION"
"${PIP[@]}" "setuptools==$SETUPTOOLS_VERSION" wheel ninja
"${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
log "installing mmengine $MMENGINE_VERSION (mmcv's build needs it)"
"${PIP[@]}" "mmengine==$MMENGINE_VERSION" addict packaging pillow pyyaml yapf opencv-python numpy

# ---- mmcv: cached wheel, or a build from the sdist --------------------------------
read -r TORCH_TAG CUDA_OK <<<"$("$PY" - <<'PY'
import shutil, torch
cuda = bool(torch.version.cuda) and torch.cuda.is_available() and shutil.which("nvcc") is not None
print(torch.__version__.replace("+", "_"), ("cu" + torch.version.cuda.replace(".", "")) if cuda else "cpu")
PY
)"
if [ "${FORCE_CUDA:-0}" = "1" ]; then CUDA_OK="cu$("$PY" -c 'import torch; print(torch.version.cuda.replace(".", ""))')"; fi
KEY="mmcv-$MMCV_VERSION-torch$TORCH_TAG-$CUDA_OK-py$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE/wheels/$KEY"
mkdir -p "$WHEEL_DIR" "$CACHE/logs"

if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  LOGFILE="$CACHE/logs/$KEY.build.log"
  log "building mmcv $MMCV_VERSION with ops ($CUDA_OK) - about 10 minutes on 2 cores; log: $LOGFILE"
  BUILD="$(mktemp -d)"
  trap 'rm -rf "$BUILD"' EXIT
  "$PY" -m pip download --quiet --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD" >"$LOGFILE" 2>&1 || {
    log "ERROR: could not download the mmcv $MMCV_VERSION sdist; full log: $LOGFILE"; tail -n 5 "$LOGFILE"; exit 1; }
  tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
  SRC="$BUILD/mmcv-$MMCV_VERSION"
  # torch >= 2.10 headers need C++20; mmcv's flag comes last on the compiler line and wins.
  sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  grep -q -- '-std=c++20' "$SRC/setup.py" || { log "ERROR: C++ standard patch did not apply to $SRC/setup.py"; exit 1; }
  CUDA_ENV=()
  if [ "$CUDA_OK" != "cpu" ]; then CUDA_ENV=(FORCE_CUDA=1); fi
  if ! env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "${CUDA_ENV[@]}" \
        "$PY" -m pip wheel -v --no-build-isolation --no-deps -w "$WHEEL_DIR" "$SRC" >>"$LOGFILE" 2>&1; then
    log "ERROR: mmcv build failed. First error line:"
    grep -m1 -E 'error:|Error|FAILED' "$LOGFILE" || tail -n 3 "$LOGFILE"
    log "full log: $LOGFILE"
    rm -f "$WHEEL_DIR"/mmcv-*.whl
    exit 1
  fi
  log "mmcv wheel cached in $WHEEL_DIR"
else
  log "reusing cached mmcv wheel from $WHEEL_DIR"
fi
"${PIP[@]}" --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl

log "installing mmdet $MMDET_VERSION, mmsegmentation $MMSEG_VERSION, timm $TIMM_VERSION, pytest"
"${PIP[@]}" "mmdet==$MMDET_VERSION" "mmsegmentation==$MMSEG_VERSION" "timm==$TIMM_VERSION" \
  pycocotools shapely scipy terminaltables ftfy regex matplotlib pytest safetensors fvcore
# openmim's own dependency chain downgrades setuptools, requests and rich: install what
# `mim train/test` needs first, then openmim itself without dependencies.
"${PIP[@]}" click colorama model-index pandas requests rich tabulate
"${PIP[@]}" --no-deps "openmim==$OPENMIM_VERSION"
log "installing hst_mm (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

"$PY" -c "from mmcv.ops import RoIAlign, nms; import mmdet, mmseg, timm, hst_mm" \
  || { log "ERROR: the installed stack does not import"; exit 1; }
echo "$STAMP_SRC" >"$STAMP"
log "done: $VENV"
