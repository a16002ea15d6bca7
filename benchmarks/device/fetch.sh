#!/usr/bin/env bash
# Fetch, on this machine, the Python packages that scopectl needs and the GPU machine's image lacks,
# into .whl/ at the repository root (ignored by git; carried to the device with carry=[".whl"]).
#
# The device image (see the device tool's KINDS.md) has Python 3.12 with torch, numpy, scipy, OpenCV,
# h5py, scikit-image, tifffile, safetensors, onnx, onnxruntime, typer, rich, matplotlib and PyYAML, but
# not pydantic (and its three helpers), rawpy or pidng.  pidng has no binary wheel for Python 3.12; its
# C extension is only used for lossless-JPEG compression, which scopectl never asks for (notes:
# compress=True fails), so its pure-Python package is carried as source.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
rm -rf .whl && mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
    -d .whl pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    typing_extensions==4.16.0 rawpy==0.28.0
python3 -m pip download -q --no-deps --no-binary=:all: -d .whl/src pidng==4.0.9
tar -xzf .whl/src/pidng-4.0.9.tar.gz -C .whl/src
mkdir -p .whl/py && cp -r .whl/src/pidng-4.0.9/src/pidng .whl/py/
rm -rf .whl/src
du -sh .whl
