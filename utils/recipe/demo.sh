#!/usr/bin/env bash
# The recipe's demo.sh: a thin front over `python -m dnnsep.bin.demo`.  Defaults (the most recent
# experiment's model, results/) are relative to the recipe directory; paths you give, to your
# current directory.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
check_python
run_py -m dnnsep.bin.demo --recipe_dir "$recipe" "$@"
