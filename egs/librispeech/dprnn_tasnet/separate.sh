# shellcheck shell=bash
# Separate the voices in an audio file, or in every audio file under a directory:
#   . ./separate.sh INPUT [--model PATH] [--out_dir results/separated] [--chunk_seconds 8] [--overlap 0.25]
# Sourced from bash or zsh, or run as `bash separate.sh ...`; the work happens in a child process,
# so nothing (options, cd, exit) leaks into your shell.  `bash separate.sh --help` lists the options.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
bash "$_dnnsep_here/local/separate.sh" "$@"; _dnnsep_rc=$?; unset _dnnsep_here
# shellcheck disable=SC2317  # reached when run with `bash separate.sh` (return fails outside a function/source)
return "$_dnnsep_rc" 2>/dev/null || exit "$_dnnsep_rc"
