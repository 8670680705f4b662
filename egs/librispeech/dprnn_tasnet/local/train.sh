#!/usr/bin/env bash
# Child of ../train.sh: a thin front over `python -m dnnsep.bin.train`, with the recipe's
# conf/default.yaml unless the arguments name another --config (the last --config wins).
# --nproc_per_node N (N > 1) starts N processes with torchrun, one per GPU (gloo on CPU).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../../../../utils/path.sh
. "$here/../../../../utils/path.sh"
echo "$0 $*" >&2

# --config FILE: as given (relative to your directory), else relative to the recipe (conf/mini.yaml).
resolve_config() {
  if [ ! -f "$1" ] && [ -f "$here/../$1" ]; then printf '%s\n' "$here/../$1"; else printf '%s\n' "$1"; fi
}

nproc=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc_per_node)
      if [ $# -lt 2 ]; then echo "$0: --nproc_per_node needs a number" >&2; exit 2; fi
      nproc=$2; shift 2 ;;
    --nproc_per_node=*) nproc=${1#*=}; shift ;;
    --config)
      if [ $# -lt 2 ]; then echo "$0: --config needs a file" >&2; exit 2; fi
      args+=("$1" "$(resolve_config "$2")"); shift 2 ;;
    --config=*) args+=(--config "$(resolve_config "${1#*=}")"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$nproc" in
  '' | *[!0-9]* | 0) echo "$0: --nproc_per_node must be a positive integer, got '$nproc'" >&2; exit 2 ;;
esac

if [ "$nproc" -gt 1 ]; then
  # refusals (existing experiment, wrong MODEL_PATH, no data) as one message, before starting processes
  "$PYTHON" -m dnnsep.bin.train --config "$here/../conf/default.yaml" ${args[@]+"${args[@]}"} --check
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$nproc" \
    -m dnnsep.bin.train --config "$here/../conf/default.yaml" ${args[@]+"${args[@]}"}
fi
exec "$PYTHON" -m dnnsep.bin.train --config "$here/../conf/default.yaml" ${args[@]+"${args[@]}"}
