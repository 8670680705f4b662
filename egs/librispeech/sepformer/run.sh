# shellcheck shell=bash
# The whole recipe:  . ./run.sh [--stage N] [--stop_stage N] [--config FILE] [--key value ...]
# Stages: 0 prepare the data, 1 train, 2 test.  `bash run.sh --help` explains every option.
# Sourced from bash or zsh, or run as `bash run.sh ...`; the work happens in a child process
# (utils/recipe/run.sh, the recipe template), so nothing (options, cd, exit, variables) leaks
# into your shell.  This file is the same in every recipe directory.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
DNNSEP_RECIPE=$_dnnsep_here DNNSEP_PROG=run.sh bash "$_dnnsep_here/../../../utils/recipe/run.sh" "$@"
# the status, with no variable left behind: eval expands it before unsetting
eval "unset _dnnsep_here; return $? 2>/dev/null || exit $?"
