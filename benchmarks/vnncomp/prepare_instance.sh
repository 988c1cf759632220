#!/usr/bin/env bash
# VNN-COMP entry point:  prepare_instance.sh v1 CATEGORY ONNX VNNLIB
#
# Checks that the verifier can start and that both files exist (plain or .gz).
# Nothing to convert or compile, no per-benchmark configuration, and no process
# is killed: every run_instance.sh ends its own verifier (hard time limit).
# Exits 0 when the instance can be run, 1 otherwise.
set -u

if [ "$#" -ne 4 ]; then
    echo "usage: $0 v1 CATEGORY ONNX VNNLIB" >&2
    exit 1
fi
version=$1 category=$2 onnx=$3 vnnlib=$4
if [ "$version" != "v1" ]; then
    echo "$0: unsupported interface version '$version' (expected v1)" >&2
    exit 1
fi
for file in "$onnx" "$vnnlib"; do
    if [ ! -e "$file" ] && [ ! -e "$file.gz" ] && [ ! -e "${file%.gz}" ]; then
        echo "$0: $file not found (nor with .gz added or removed)" >&2
        exit 1
    fi
done
python=${VERIFIER_PYTHON:-python3}
if ! "$python" -c "import verifier.cli, verifier.runtime" ; then
    echo "$0: '$python' cannot import the verifier package" >&2
    exit 1
fi
echo "verifier: ready for category $category" >&2
exit 0
