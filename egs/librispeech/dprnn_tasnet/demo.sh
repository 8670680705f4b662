# shellcheck shell=bash
# Record 5 s from the microphone and separate the voices:  . ./demo.sh [--model PATH] [--duration 5]
#   [--device_index I] [--sample_rate HZ] [--out_dir results] [--list_devices]
# Sourced from bash or zsh, or run as `bash demo.sh ...`; the work happens in a child process,
# so nothing (options, cd, exit) leaks into your shell.  `bash demo.sh --help` lists the options.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
bash "$_dnnsep_here/local/demo.sh" "$@"; _dnnsep_rc=$?; unset _dnnsep_here
# shellcheck disable=SC2317  # reached when run with `bash demo.sh` (return fails outside a function/source)
return "$_dnnsep_rc" 2>/dev/null || exit "$_dnnsep_rc"
