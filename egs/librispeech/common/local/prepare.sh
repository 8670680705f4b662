#!/usr/bin/env bash
# Child of ../prepare.sh: a thin front over `python -m dnnsep.bin.prepare`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../../../../utils/path.sh
. "$here/../../../../utils/path.sh"
echo "$0 $*" >&2
exec "$PYTHON" -m dnnsep.bin.prepare "$@"
