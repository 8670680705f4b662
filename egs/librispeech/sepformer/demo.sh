# shellcheck shell=bash
# Record 5 s from the microphone and separate the voices:  . ./demo.sh [--model PATH] [--duration 5]
#   [--live] [--out_dir results] [--list_devices]   `bash demo.sh --help` lists the options.
# Sourced from bash or zsh, or run as `bash demo.sh ...`; the work happens in a child process
# (utils/recipe/demo.sh, the recipe template), so nothing (options, cd, exit, variables) leaks
# into your shell.  This file is the same in every recipe directory.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
DNNSEP_RECIPE=$_dnnsep_here DNNSEP_PROG=demo.sh bash "$_dnnsep_here/../../../utils/recipe/demo.sh" "$@"
# the status, with no variable left behind: eval expands it before unsetting
eval "unset _dnnsep_here; return $? 2>/dev/null || exit $?"
