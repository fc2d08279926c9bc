#!/usr/bin/env bash
# Starts ComfyUI with this pack installed, on http://127.0.0.1:8188.
# Uses the ComfyUI at $COMFYUI_DIR (default: ../ComfyUI beside this checkout), cloning it first if
# it is not there; links this checkout into its custom_nodes/ as "sdbridge"; installs ComfyUI's and
# the pack's requirements into ComfyUI's .venv; runs it (on the CPU when no NVIDIA GPU is present).
# Extra arguments go to ComfyUI's main.py.
set -euo pipefail
pack=$(cd "$(dirname "$0")/.." && pwd)
comfy=${COMFYUI_DIR:-$pack/../ComfyUI}
[ -d "$comfy" ] || git clone --depth 1 https://github.com/comfyanonymous/ComfyUI "$comfy"
comfy=$(cd "$comfy" && pwd)
if [ ! -x "$comfy/.venv/bin/python" ]; then
  python3 -m venv "$comfy/.venv"
fi
"$comfy/.venv/bin/python" -m pip install --quiet -r "$comfy/requirements.txt" -r "$pack/requirements.txt"
ln -sfn "$pack" "$comfy/custom_nodes/sdbridge"
device=()
command -v nvidia-smi >/dev/null 2>&1 || device=(--cpu)
cd "$comfy"
exec .venv/bin/python main.py --listen 127.0.0.1 --port 8188 "${device[@]}" "$@"
