#!/usr/bin/env bash
# Set up the pinned OpenMMLab stack in ./.venv (idempotent).
#
#   bash tools/setup_env.sh                      # default: nothing is compiled
#   MMCV_OPS=compiled bash tools/setup_env.sh    # mmcv's C++ (and CUDA) operators
#   HST_MM_EXTRAS=lora,dev bash tools/setup_env.sh   # also extras of pyproject.toml
#
# The default is the runtime stack only. Extras (pyproject.toml [project.optional-dependencies]):
# lora (peft, transformers, accelerate), tensorboard, analysis (seaborn), dev (pytest,
# pytest-timeout, ruff, pre-commit); `make test` asks for those the tests need. Extras once
# installed stay: a later run without them finds the environment up to date.
#
# Versions come from requirements/pins.txt. mmcv has no wheel for current PyTorch, so it is
# built from its PyPI sdist by tools/build_mmcv.sh, in one of two ways (MMCV_OPS):
#   torchvision (default)  pure-Python mmcv (distribution mmcv-lite) with mmcv_ext/_ext.py as
#                          its operator module: NMS, RoIAlign and sigmoid focal loss on
#                          torch/torchvision, CPU and CUDA; seconds to build, no compiler.
#   compiled               mmcv's own C++ operators (CUDA too where nvcc and a GPU are found,
#                          or FORCE_CUDA=1): 10-25 minutes on 2 cores, cached.
# Wheels are cached under $HST_MM_CACHE (default ~/.cache/hst_mm).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HST_MM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
PINS="$ROOT/requirements/pins.txt"
MMCV_OPS="${MMCV_OPS:-torchvision}"
EXTRAS="${HST_MM_EXTRAS:-}"
export HST_MM_CACHE="${HST_MM_CACHE:-$HOME/.cache/hst_mm}"

log() { printf '[setup] %s\n' "$*"; }
pin() { sed -n "s/^$1==//p" "$PINS"; }

case "$MMCV_OPS" in
  torchvision|compiled) ;;
  *) log "ERROR: MMCV_OPS must be 'torchvision' (default) or 'compiled', got '$MMCV_OPS'"; exit 2 ;;
esac

case "$EXTRAS" in
  *[!a-z,]*) log "ERROR: HST_MM_EXTRAS is a comma-separated list of extras (lora,tensorboard,analysis,dev), got '$EXTRAS'"; exit 2 ;;
esac

# A stamp of everything that decides the environment (first line) and the extras installed
# in it (second line): if the first matches and the extras asked for are installed, there is
# nothing to do; if only extras are missing, only they are installed.
STAMP_SRC="$(cat "$ROOT/tools/setup_env.sh" "$ROOT/tools/build_mmcv.sh" "$ROOT/pyproject.toml" \
  "$PINS" "$ROOT/mmcv_ext/_ext.py" 2>/dev/null | sha256sum | cut -c1-16)-$MMCV_OPS"
STAMP="$VENV/.hst_mm_stamp"
missing_extras() {  # the extras of $EXTRAS not on the stamp's second line, comma-separated
  local have="${1:-}" e out=""
  for e in ${EXTRAS//,/ }; do
    case ",$have," in *",$e,"*) ;; *) out="$out,$e" ;; esac
  done
  echo "${out#,}"
}
install_extras() {  # $1: extras; hst_mm (editable) with them, versions from the pins
  log "installing the extras $1"
  "${PIP[@]}" --no-build-isolation -e "$ROOT[$1]"
}
if [ -f "$STAMP" ] && [ "$(head -1 "$STAMP")" = "$STAMP_SRC" ] && [ -x "$VENV/bin/python" ]; then
  HAVE="$(sed -n 2p "$STAMP")"
  MISSING="$(missing_extras "$HAVE")"
  if [ -z "$MISSING" ]; then
    log "environment up to date ($VENV, mmcv operators: $MMCV_OPS, extras: ${HAVE:-none})"
    exit 0
  fi
  PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$PINS")
  install_extras "$MISSING"
  printf '%s\n%s\n' "$STAMP_SRC" "${HAVE:+$HAVE,}$MISSING" >"$STAMP"
  log "done: $VENV (extras: ${HAVE:+$HAVE,}$MISSING)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check -c "$PINS")

log "installing torch $(pin torch), torchvision $(pin torchvision), setuptools $(pin setuptools)"
"${PIP[@]}" setuptools wheel ninja
"${PIP[@]}" torch torchvision
log "installing mmengine $(pin mmengine), mmdet $(pin mmdet), mmsegmentation $(pin mmsegmentation), timm $(pin timm)"
"${PIP[@]}" mmengine addict packaging pillow pyyaml yapf opencv-python numpy \
  mmdet mmsegmentation timm \
  pycocotools shapely scipy terminaltables ftfy regex matplotlib safetensors
# openmim's own dependency chain downgrades setuptools, requests and rich: install what
# `mim train/test` needs first, then openmim itself without dependencies.
"${PIP[@]}" click colorama model-index pandas requests rich tabulate
"${PIP[@]}" --no-deps openmim

log "mmcv $(pin mmcv), operators: $MMCV_OPS"
WHEEL="$(MMCV_OPS="$MMCV_OPS" PY="$PY" bash "$ROOT/tools/build_mmcv.sh")"
# Only one of mmcv / mmcv-lite may own the mmcv package.
"$PY" -m pip uninstall --quiet -y mmcv mmcv-lite >/dev/null 2>&1 || true
"${PIP[@]}" --no-deps --force-reinstall "$WHEEL"

log "installing hst_mm (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
if [ -n "$EXTRAS" ]; then
  install_extras "$EXTRAS"
fi

"$PY" -c "from mmcv.ops import RoIAlign, nms; import mmdet.models, mmseg.models, timm, hst_mm" \
  || { log "ERROR: the installed stack does not import"; exit 1; }
printf '%s\n%s\n' "$STAMP_SRC" "$EXTRAS" >"$STAMP"
log "done: $VENV (extras: ${EXTRAS:-none})"
