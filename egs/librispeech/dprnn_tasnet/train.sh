# shellcheck shell=bash
# Train DPRNN-TasNet:  . ./train.sh [--key value ...] OUT_DIR [MODEL_PATH]
# Options override conf/default.yaml (or --config FILE); MODEL_PATH (a model/last.pth) resumes a run.
# --nproc_per_node N trains on N GPUs with torchrun.  `bash train.sh --help` lists every option.
# Sourced from bash or zsh, or run as `bash train.sh ...`; the work happens in a child process,
# so nothing (options, cd, exit) leaks into your shell.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
bash "$_dnnsep_here/local/train.sh" "$@"; _dnnsep_rc=$?; unset _dnnsep_here
# shellcheck disable=SC2317  # reached when run with `bash train.sh` (return fails outside a function/source)
return "$_dnnsep_rc" 2>/dev/null || exit "$_dnnsep_rc"
