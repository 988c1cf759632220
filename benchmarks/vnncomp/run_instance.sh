#!/usr/bin/env bash
# VNN-COMP entry point:  run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
#
# Verifies one instance with `python -m verifier verify` and writes the VNN-COMP
# result file (sat + counterexample, unsat, unknown, timeout or error). It always
# exits 0 once the arguments make sense: the answer, including `error`, is in the
# result file. CATEGORY is only logged: there is no per-benchmark configuration.
# ONNX and VNNLIB may be gzip-compressed (.gz); a path whose file is missing is
# also tried with .gz added or removed.
#
# Environment: VERIFIER_PYTHON (default python3), VERIFIER_STARTUP_MARGIN (seconds
# kept for interpreter start-up and writing, default 1).
set -u

if [ "$#" -ne 6 ]; then
    echo "usage: $0 v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT" >&2
    exit 1
fi
version=$1 category=$2 onnx=$3 vnnlib=$4 results=$5 timeout=$6
if [ "$version" != "v1" ]; then
    echo "$0: unsupported interface version '$version' (expected v1)" >&2
    exit 1
fi

# the file itself, else the same path with .gz added or removed
existing() {
    if [ -e "$1" ]; then echo "$1"
    elif [ -e "$1.gz" ]; then echo "$1.gz"
    elif [ -e "${1%.gz}" ]; then echo "${1%.gz}"
    else echo "$1"   # let the verifier report the missing file
    fi
}
onnx=$(existing "$onnx")
vnnlib=$(existing "$vnnlib")

python=${VERIFIER_PYTHON:-python3}
margin=${VERIFIER_STARTUP_MARGIN:-1}
budget=$(awk -v t="$timeout" -v m="$margin" 'BEGIN {
    if (t + 0 != t || t <= 0) { print "bad"; exit }
    b = t - m; if (b < 0.5 * t) b = 0.5 * t; if (b < 0.1) b = 0.1; print b }')
if [ "$budget" = "bad" ]; then
    echo "$0: TIMEOUT must be a positive number, got '$timeout'" >&2
    exit 1
fi

echo "verifier: category $category, $(basename "$onnx") $(basename "$vnnlib"), ${budget} s" >&2
rm -f "$results"
"$python" -m verifier verify "$onnx" "$vnnlib" --timeout "$budget" --result-file "$results"
status=$?
if [ ! -s "$results" ]; then
    # the verifier died before it could answer (crash, killed): the answer is error
    echo "verifier: no result written (exit status $status); answering error" >&2
    echo "error" > "$results"
fi
exit 0
