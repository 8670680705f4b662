# shellcheck shell=bash
# Download LibriSpeech and build N-speaker mixture lists:  . ./prepare.sh DATASET_DIR N_SOURCES [--options]
# Sourced from bash or zsh, or run as `bash prepare.sh ...`; the work happens in a child process,
# so nothing (options, cd, exit) leaks into your shell.  `bash prepare.sh --help` lists the options.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
bash "$_dnnsep_here/local/prepare.sh" "$@"; _dnnsep_rc=$?; unset _dnnsep_here
# shellcheck disable=SC2317  # reached when run with `bash prepare.sh` (return fails outside a function/source)
return "$_dnnsep_rc" 2>/dev/null || exit "$_dnnsep_rc"
