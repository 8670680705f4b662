# shellcheck shell=bash
# The whole recipe:  . ./run.sh [--stage N] [--stop_stage N] [--config FILE] [--synthetic] [--key value ...]
# Stages: 0 prepare the data, 1 train, 2 test.  `bash run.sh --help` explains every option.
# Sourced from bash or zsh, or run as `bash run.sh ...`; the work happens in a child process,
# so nothing (options, cd, exit) leaks into your shell.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
bash "$_dnnsep_here/local/run.sh" "$@"; _dnnsep_rc=$?; unset _dnnsep_here
# shellcheck disable=SC2317  # reached when run with `bash run.sh` (return fails outside a function/source)
return "$_dnnsep_rc" 2>/dev/null || exit "$_dnnsep_rc"
