#!/usr/bin/env bash
# The README's second command, and what CI runs after its system packages: set up everything the
# tests need (utils/setup.sh test), then run the whole suite, end-to-end recipe tests included.
# Arguments go to pytest (e.g. -m "not slow", or a test file).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PYTHON=$(bash "$root/utils/setup.sh" test)
export PYTHON
cd "$root"
exec "$PYTHON" -m pytest "$@"
