#!/usr/bin/env bash
# The recipe's train.sh: a thin front over `python -m dnnsep.bin.train`, with the recipe's
# conf/default.yaml unless the arguments name another --config (the last --config wins).
# --nproc_per_node N (N > 1) starts N processes with torchrun, one per GPU (gloo on CPU).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
check_python

nproc=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc_per_node)
      if [ $# -lt 2 ]; then say "$prog: --nproc_per_node needs a number"; exit 2; fi
      nproc=$2; shift 2 ;;
    --nproc_per_node=*) nproc=${1#*=}; shift ;;
    --config)
      if [ $# -lt 2 ]; then say "$prog: --config needs a file"; exit 2; fi
      args+=("$1" "$(resolve_config "$2")"); shift 2 ;;
    --config=*) args+=(--config "$(resolve_config "${1#*=}")"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$nproc" in
  '' | *[!0-9]* | 0) say "$prog: --nproc_per_node must be a positive integer, got '$nproc'"; exit 2 ;;
esac

train=(-m dnnsep.bin.train --config "$recipe/conf/default.yaml" ${args[@]+"${args[@]}"})
if [ "$nproc" -gt 1 ]; then
  # refusals (existing experiment, wrong MODEL_PATH, no data) as one message, before starting processes
  run_py "${train[@]}" --check
  run_py -m torch.distributed.run --standalone --nproc_per_node "$nproc" "${train[@]}"
  exit
fi
run_py "${train[@]}"
