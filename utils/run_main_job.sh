#!/usr/bin/env bash
# The README's first command: set up (utils/setup.sh main), then run the main job, the DPRNN recipe's
# mini configuration (data -> train -> test; an offline corpus where LibriSpeech cannot be downloaded).
# Arguments go to run.sh (e.g. --epochs 2).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PYTHON=$(bash "$root/utils/setup.sh" main)
export PYTHON
DNNSEP_PROG=run.sh bash "$root/egs/librispeech/dprnn_tasnet/run.sh" --config conf/mini.yaml "$@"
