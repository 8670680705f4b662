# shellcheck shell=bash
# Train this recipe's model:  . ./train.sh [--key value ...] OUT_DIR [MODEL_PATH]
# Options override conf/default.yaml (or --config FILE); MODEL_PATH (a model/last.pth) resumes a run.
# --nproc_per_node N trains on N GPUs with torchrun.  `bash train.sh --help` lists every option.
# Sourced from bash or zsh, or run as `bash train.sh ...`; the work happens in a child process
# (utils/recipe/train.sh, the recipe template), so nothing (options, cd, exit, variables) leaks
# into your shell.  This file is the same in every recipe directory.
if [ -n "${ZSH_VERSION:-}" ]; then eval '_dnnsep_here=${${(%):-%x}:A:h}'; else _dnnsep_here=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd -P); fi
DNNSEP_RECIPE=$_dnnsep_here DNNSEP_PROG=train.sh bash "$_dnnsep_here/../../../utils/recipe/train.sh" "$@"
# the status, with no variable left behind: eval expands it before unsetting
eval "unset _dnnsep_here; return $? 2>/dev/null || exit $?"
