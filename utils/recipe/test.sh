#!/usr/bin/env bash
# The recipe's test.sh: a thin front over `python -m dnnsep.bin.evaluate`; without a model, the best
# model of the most recent experiment under the recipe's exp*/ folders.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
check_python
run_py -m dnnsep.bin.evaluate --recipe_dir "$recipe" "$@"
