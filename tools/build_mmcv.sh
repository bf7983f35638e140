#!/usr/bin/env bash
# Build (or find in the cache) the mmcv wheel for this environment; print its path.
#
#   MMCV_OPS=torchvision PY=.venv/bin/python bash tools/build_mmcv.sh   # default
#   MMCV_OPS=compiled    PY=.venv/bin/python bash tools/build_mmcv.sh
#
# torchvision: mmcv's sdist built as pure Python (MMCV_WITH_OPS=0, distribution mmcv-lite,
#   import name and version still mmcv 2.1.0) with mmcv_ext/_ext.py copied in as mmcv/_ext.py,
#   the module mmcv's ops import. A py3-none-any wheel: it also installs on other machines
#   and Pythons (carry it to an offline GPU machine, see docs/gpu.md).
# compiled: mmcv's C++ operators (CUDA too when torch sees a GPU and nvcc exists, or
#   FORCE_CUDA=1); torch >= 2.10 headers need C++20, mmcv's setup.py forces C++17, so the
#   flag is patched. Works only with the exact torch build it was compiled against.
# PY's environment needs torch and setuptools < 81 (mmcv's setup.py imports pkg_resources).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
CACHE="${HST_MM_CACHE:-$HOME/.cache/hst_mm}"
MMCV_OPS="${MMCV_OPS:-torchvision}"
VERSION="$(sed -n 's/^mmcv==//p' "$ROOT/requirements/pins.txt")"
log() { printf '[build_mmcv] %s\n' "$*" >&2; }

if [ "$MMCV_OPS" = torchvision ]; then
  KEY="mmcv-lite-$VERSION-ext$(sha256sum "$ROOT/mmcv_ext/_ext.py" | cut -c1-12)"
else
  read -r TORCH_TAG CUDA_OK <<<"$("$PY" - <<'PY'
import os, shutil, torch
cuda = bool(torch.version.cuda) and (os.environ.get('FORCE_CUDA') == '1'
                                     or (torch.cuda.is_available() and shutil.which('nvcc')))
print(torch.__version__.replace('+', '_'), ('cu' + torch.version.cuda.replace('.', '')) if cuda else 'cpu')
PY
)"
  KEY="mmcv-$VERSION-torch$TORCH_TAG-$CUDA_OK-py$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
fi
WHEEL_DIR="$CACHE/wheels/$KEY"
if ls "$WHEEL_DIR"/*.whl >/dev/null 2>&1; then
  log "reusing cached wheel from $WHEEL_DIR"
  ls "$WHEEL_DIR"/*.whl | head -n 1
  exit 0
fi

mkdir -p "$WHEEL_DIR" "$CACHE/logs" "$CACHE/sdist"
LOGFILE="$CACHE/logs/$KEY.build.log"
SDIST="$CACHE/sdist/mmcv-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  "$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
      "mmcv==$VERSION" -d "$CACHE/sdist" >"$LOGFILE" 2>&1 || {
    log "ERROR: could not download the mmcv $VERSION sdist; full log: $LOGFILE"; tail -n 5 "$LOGFILE" >&2; exit 1; }
fi
BUILD="$(mktemp -d)"
trap 'rm -rf "$BUILD"' EXIT
tar -xzf "$SDIST" -C "$BUILD"
SRC="$BUILD/mmcv-$VERSION"

if [ "$MMCV_OPS" = torchvision ]; then
  log "building pure-Python mmcv $VERSION with hst_mm's operators (mmcv_ext/_ext.py)"
  cp "$ROOT/mmcv_ext/_ext.py" "$SRC/mmcv/_ext.py"
  ENV=(MMCV_WITH_OPS=0)
else
  log "building mmcv $VERSION with compiled operators ($CUDA_OK): 10-25 minutes on 2 cores; log: $LOGFILE"
  sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  grep -q -- '-std=c++20' "$SRC/setup.py" || { log "ERROR: C++ standard patch did not apply to $SRC/setup.py"; exit 1; }
  ENV=(MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}")
  if [ "$CUDA_OK" != cpu ]; then ENV+=(FORCE_CUDA=1); fi
fi
if ! env "${ENV[@]}" "$PY" -m pip wheel -v --no-build-isolation --no-deps -w "$WHEEL_DIR" "$SRC" \
     >>"$LOGFILE" 2>&1; then
  log "ERROR: mmcv build failed. First error line:"
  grep -m1 -E 'error:|Error|FAILED' "$LOGFILE" >&2 || tail -n 3 "$LOGFILE" >&2
  log "full log: $LOGFILE"
  rm -f "$WHEEL_DIR"/*.whl
  exit 1
fi
log "wheel cached in $WHEEL_DIR"
ls "$WHEEL_DIR"/*.whl | head -n 1
