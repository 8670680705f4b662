#!/usr/bin/env bash
# Child of ../demo.sh: a thin front over `python -m dnnsep.bin.demo`.  Defaults (the model under
# exp/, results/) are relative to the recipe directory; paths you give, to your current directory.
set -euo pipefail
recipe=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../../../../utils/path.sh
. "$recipe/../../../utils/path.sh"
echo "$0 $*" >&2
exec "$PYTHON" -m dnnsep.bin.demo --recipe_dir "$recipe" "$@"
