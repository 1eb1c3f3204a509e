#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels that petseg needs on the GPU machine and that its image
# lacks (it has PyTorch, Lightning, torchmetrics, torchvision, tensorboard, numpy, scipy, OpenCV,
# Pillow, PyYAML, matplotlib and tqdm, and no network). Versions are requirements.txt's pins;
# compiled packages are fetched for each Python version named (default 3.11 to 3.13; kornia 0.9 needs 3.11), and pip
# there picks the one that fits:
#
#   bash scripts/device_wheels.sh            # here, with PyPI reachable
#   # carry .whl with the checkout (the device tool's carry option: ".whl"), then there:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
#       --find-links .whl $(cat .whl/NAMES) && export PYTHONPATH=/tmp/site:src
set -euo pipefail
cd "$(dirname "$0")/.."
pythons=${PYTHONS:-"3.11 3.12 3.13"}
names="albumentations albucore pydantic pydantic_core annotated-types typing-inspection
typing_extensions stringzilla simsimd kornia kornia_rs jsonargparse docstring_parser
typeshed_client"
pin() {  # NAME==VERSION from requirements.txt (names compared as pip does: - _ . alike, any case)
  local key
  key=$(echo "$1" | tr 'A-Z_.' 'a-z--')
  awk -v key="$key" -F'==' '{n=tolower($1); gsub(/[_.]/, "-", n)} n==key {print $0; exit}' \
    requirements.txt
}
mkdir -p .whl
specs=()
for name in $names; do
  spec=$(pin "$name")
  [ -n "$spec" ] || { echo "no pin for $name in requirements.txt" >&2; exit 1; }
  specs+=("$spec")
done
for py in $pythons; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${specs[@]}"
done
echo "$names" | tr '\n' ' ' >.whl/NAMES
du -sh .whl
