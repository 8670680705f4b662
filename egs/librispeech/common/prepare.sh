# shellcheck shell=bash
# Download LibriSpeech and build N-speaker mixture lists:  . ./prepare.sh DATASET_DIR N_SOURCES [--options]
# Sourced from bash or zsh, or run as `bash prepare.sh ...`; the work happens in a child process,
# so nothing (options, cd, exit, variables) leaks into your shell.  `bash prepare.sh --help` lists the options.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
DNNSEP_PROG=prepare.sh bash "$_dnnsep_here/local/prepare.sh" "$@"
# the status, with no variable left behind: eval expands it before unsetting
eval "unset _dnnsep_here; return $? 2>/dev/null || exit $?"
