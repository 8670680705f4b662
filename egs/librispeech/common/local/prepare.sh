#!/usr/bin/env bash
# Child of ../prepare.sh: a thin front over `python -m dnnsep.bin.prepare`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../../../../utils/path.sh
. "$here/../../../../utils/path.sh"
if [ "${DNNSEP_VERBOSE:-0}" = 1 ]; then printf '+ %s\n' "$PYTHON -m dnnsep.bin.prepare $*" >&2; fi
exec "$PYTHON" -m dnnsep.bin.prepare "$@"
