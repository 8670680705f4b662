# shellcheck shell=bash
# Evaluate a model on the test list:  . ./test.sh MODEL_PATH [--options]
# Writes a per-mixture CSV, a summary and a few example WAVs.  `bash test.sh --help` lists the options.
# Sourced from bash or zsh, or run as `bash test.sh ...`; the work happens in a child process,
# so nothing (options, cd, exit) leaks into your shell.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
bash "$_dnnsep_here/local/test.sh" "$@"; _dnnsep_rc=$?; unset _dnnsep_here
# shellcheck disable=SC2317  # reached when run with `bash test.sh` (return fails outside a function/source)
return "$_dnnsep_rc" 2>/dev/null || exit "$_dnnsep_rc"
