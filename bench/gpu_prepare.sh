#!/usr/bin/env bash
# Fill the two ignored folders that bench/gpu.sh carries to a fresh device machine: .whl/ (wheels for the
# device's Python 3.12 of the packages its image lacks or has too old) and .mnist/ (MNIST's four IDX files).
#
#     bash bench/gpu_prepare.sh          # MNIST from $MNIST_DIR, default ../shared/mnist
#
# The device image (KINDS.md) has torch, numpy, pandas, pyarrow, accelerate 1.15, safetensors 0.8, tokenizers
# 0.23, matplotlib, pyyaml; it lacks datasets, evaluate, dill, multiprocess and huggingface_hub's httpx2, and
# has transformers 5.17 and huggingface_hub 1.33 (we need >= 5.24 and >= 2.4). Each wheel is pinned to the
# version installed here, so the device runs what the CPU dry run ran; the small pure-Python needs of
# huggingface_hub (click, fsspec, idna, ...) travel too, as the image's versions of them are not known.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES="transformers huggingface_hub httpx2 httpcore2 truststore hf-xet click regex fsspec idna anyio h11
typing_extensions datasets evaluate dill multiprocess"
MNIST_DIR=${MNIST_DIR:-../shared/mnist}

for folder in /.whl/ /.mnist/; do
    grep -qxF "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >> .git/info/exclude
done

pins=$(python3 -c 'import sys, importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in sys.argv[1:]))' $PACKAGES)
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $pins
rm -rf .mnist && mkdir .mnist
cp "$MNIST_DIR"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz .mnist/

# What travels: tracked files, untracked files git does not ignore, and the two carried folders (64 MiB at most).
travel_kib=$( (git ls-files -z; git ls-files -z -o --exclude-standard) | du -ck --files0-from=- | tail -1 | cut -f1)
carried_kib=$(du -sk .whl .mnist | awk '{sum += $1} END {print sum}')
total_mib=$(( (travel_kib + carried_kib) / 1024 ))
echo "wheels: $(ls .whl | wc -l) ($(du -sh .whl | cut -f1)); MNIST: $(du -sh .mnist | cut -f1); travels in all: ${total_mib} MiB of 64"
if (( total_mib >= 64 )); then
    echo "error: over the device's 64 MiB; the largest untracked files git does not ignore:" >&2
    git ls-files -z -o --exclude-standard | du -k --files0-from=- | sort -rn | head -5 >&2
    exit 1
fi
