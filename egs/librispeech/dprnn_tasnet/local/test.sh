#!/usr/bin/env bash
# Child of ../test.sh: a thin front over `python -m dnnsep.bin.evaluate`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../../../../utils/path.sh
. "$here/../../../../utils/path.sh"
echo "$0 $*" >&2
exec "$PYTHON" -m dnnsep.bin.evaluate "$@"
