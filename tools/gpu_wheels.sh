#!/usr/bin/env bash
# Put into DIR every wheel that tools/gpu_check.py needs on a CUDA machine without network
# whose Python already has torch, torchvision, timm, numpy and opencv (and the usual
# scientific stack: matplotlib, scipy, pyyaml, rich, tqdm, six, packaging) but no OpenMMLab
# packages. Run it on a machine with network, from anywhere:
#
#   bash tools/gpu_wheels.sh DIR          # prints the wheels and their total size
#
# then, on the GPU machine, from the repository root:
#
#   python3 -m pip install --no-index --no-deps --target /tmp/site DIR/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
#   python3 tools/gpu_check.py
#
# What goes into DIR:
# * OpenMMLab at the versions requirements/pins.txt pins, and the packages they import that
#   such a machine lacks, at the versions this project is tested with. setuptools < 81
#   because mmengine resolves mmdet::/mmseg:: configs through pkg_resources.
# * mmcv 2.1.0 with this project's operators (mmcv_ext/_ext.py), the pure-Python wheel that
#   tools/build_mmcv.sh builds (or finds in its cache): py3-none-any, so it installs on any
#   Python there.
# * Not hst_mm itself: the checkout is used through PYTHONPATH (the configs live there too).
#
# Environment: PYVER (default 3.12) is the GPU machine's Python; PY (default .venv/bin/python,
# else python3) runs pip and the mmcv build here, and needs torch and setuptools < 81.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:?usage: bash tools/gpu_wheels.sh DIR   (the folder to fill with wheels)}"
PYVER="${PYVER:-3.12}"
if [ -z "${PY:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
log() { printf '[gpu_wheels] %s\n' "$*" >&2; }
pin() { sed -n "s/^$1==//p" "$ROOT/requirements/pins.txt"; }

PACKAGES=(
  "mmengine==$(pin mmengine)" "mmdet==$(pin mmdet)" "mmsegmentation==$(pin mmsegmentation)"
  "setuptools==$(pin setuptools)"
  # imported by mmdet (pycocotools, shapely, terminaltables), mmseg (prettytable, ftfy),
  # mmengine (addict, yapf -> platformdirs, termcolor); wcwidth for prettytable and ftfy
  pycocotools==2.0.11 shapely==2.2.0 terminaltables==3.1.10 prettytable==3.18.0
  wcwidth==0.9.4 ftfy==6.3.1 addict==2.4.0 yapf==0.43.0 platformdirs==4.14.8
  termcolor==3.3.0
)

mkdir -p "$DIR"
log "downloading ${#PACKAGES[@]} wheels for CPython $PYVER, manylinux x86-64, into $DIR"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DIR" "${PACKAGES[@]}"

log "mmcv with hst_mm's operators (tools/build_mmcv.sh)"
MMCV_WHEEL="$(MMCV_OPS=torchvision PY="$PY" bash "$ROOT/tools/build_mmcv.sh" | tail -n 1)"
case "$MMCV_WHEEL" in
  *-none-any.whl) cp "$MMCV_WHEEL" "$DIR/" ;;
  *) log "ERROR: tools/build_mmcv.sh gave '$MMCV_WHEEL', not a pure-Python (none-any) wheel"; exit 1 ;;
esac

# pip refuses to install two versions of one package together: a DIR reused with other
# versions must be cleaned first.
DUPLICATES="$(for f in "$DIR"/*.whl; do basename "$f" | cut -d- -f1 | tr 'A-Z-' 'a-z_'; done \
              | sort | uniq -d)"
if [ -n "$DUPLICATES" ]; then
  log "ERROR: $DIR holds several versions of: $(echo $DUPLICATES); remove the old ones"
  exit 1
fi

ls -1 "$DIR"/*.whl | xargs -n1 basename
log "total: $(du -ch "$DIR"/*.whl | tail -n 1 | cut -f1) in $(ls "$DIR"/*.whl | wc -l) wheels"
