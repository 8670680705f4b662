# shellcheck shell=bash
# Evaluate a model on the test list:  . ./test.sh [--model PATH] [--options]
# Writes a per-mixture CSV, a summary and a few example WAVs.  `bash test.sh --help` lists the options.
# Sourced from bash or zsh, or run as `bash test.sh ...`; the work happens in a child process
# (utils/recipe/test.sh, the recipe template), so nothing (options, cd, exit, variables) leaks
# into your shell.  This file is the same in every recipe directory.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
DNNSEP_RECIPE=$_dnnsep_here DNNSEP_PROG=test.sh bash "$_dnnsep_here/../../../utils/recipe/test.sh" "$@"
# the status, with no variable left behind: eval expands it before unsetting
eval "unset _dnnsep_here; return $? 2>/dev/null || exit $?"
