#!/usr/bin/env bash
# The recipe template's run.sh: stage 0 prepares the data (the corpus's local/data.sh), 1 trains,
# 2 tests.  Shared by every recipe: a corpus contributes egs/<corpus>/common/local/data.sh, a model
# its conf/ files.  See usage below.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
data_sh=$recipe/../common/local/data.sh

usage() {
  cat <<USAGE
usage: $prog [options] [--key value ...]

Stages: 0 prepare the data, 1 train, 2 test.

  --stage N / --stop_stage N   run stages N..M only (default: 0 to 2)
  --config FILE                training config (default: conf/default.yaml), relative to your
                               directory or else to the recipe's (e.g. conf/mini.yaml).
                               Its 'prepare:' and 'corpus:' sections give the options of stage 0.
  --out_dir DIR                experiments go under DIR (default: exp, or exp-<corpus tag> such as
                               exp-synthetic for an offline corpus)
  --nproc_per_node N           train on N GPUs (torchrun)
  --verbose                    show the commands the stages run
  --key value                  any training option (e.g. --epochs 20 --device cpu --model.hidden 128)
$(bash "$data_sh" --help_options)

Rerunning continues an interrupted training from its model/last.pth, and skips data already prepared.
USAGE
}

stage=0 stop_stage=2 config=$recipe/conf/default.yaml out_dir=''
corpus_options=" $(bash "$data_sh" --list_options | tr '\n' ' ') "  # " --flag --option= ..."
corpus_args=() train_args=() launch_args=() dataset_override=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --verbose) export DNNSEP_VERBOSE=1; shift; continue ;;
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;  # --key=value -> --key value
    --*) ;;
    *) say "$prog: unexpected argument '$1' (see --help)"; exit 2 ;;
  esac
  case "$corpus_options" in
    *" $1 "*) corpus_args+=("$1"); shift; continue ;;  # a corpus flag
  esac
  if [ $# -lt 2 ]; then say "$prog: $1 needs a value (see --help)"; exit 2; fi
  case "$corpus_options" in
    *" $1= "*) corpus_args+=("$1" "$2"); shift 2; continue ;;  # a corpus option with a value
  esac
  case "$1" in
    --stage) stage=$2 ;;
    --stop_stage) stop_stage=$2 ;;
    --config) config=$(resolve_config "$2") ;;
    --out_dir) out_dir=$2 ;;
    --nproc_per_node) launch_args+=("$1" "$2") ;;
    --dataset_dir) dataset_override=("$1" "$2"); train_args+=("$1" "$2") ;;
    *) train_args+=("$1" "$2") ;;
  esac
  shift 2
done
for n in "$stage" "$stop_stage"; do
  case "$n" in '' | *[!0-9]*) say "$prog: --stage and --stop_stage take a number, got '$n'"; exit 2 ;; esac
done
check_python

train_py() {  # python -m dnnsep.bin.train with this run's config and options
  run_py -m dnnsep.bin.train --config "$config" ${train_args[@]+"${train_args[@]}"} "$@"
}
# What the stages need, in one call: dataset_dir, n_sources, then the config's corpus options and
# prepare options (one per line each, the two groups separated by a line '--').
resolved=$(train_py --get dataset_dir,n_sources,corpus_args,--,prepare_args)
line_no=0 group=corpus config_corpus=() prepare_args=()
while IFS= read -r line; do
  line_no=$((line_no + 1))
  case $line_no in
    1) dataset_dir=$line ;;
    2) n_sources=$line ;;
    *)
      if [ "$line" = -- ]; then group=prepare
      elif [ -z "$line" ]; then :
      elif [ "$group" = corpus ]; then config_corpus+=("$line")
      else prepare_args+=("$line"); fi ;;
  esac
done <<RESOLVED
$resolved
RESOLVED
# the command line's corpus options after the config's, so they win
corpus_all=(${config_corpus[@]+"${config_corpus[@]}"} ${corpus_args[@]+"${corpus_args[@]}"})

# Stage 0 makes or finds the data; without it, where it is.  data.sh prints two lines: the dataset
# directory and a tag ('' or e.g. 'synthetic': experiments then go to exp-<tag>).
if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  where=$(bash "$data_sh" "$dataset_dir" "$n_sources" ${corpus_all[@]+"${corpus_all[@]}"} \
    -- ${prepare_args[@]+"${prepare_args[@]}"})
else
  where=$(bash "$data_sh" --where "$dataset_dir" "$n_sources" ${corpus_all[@]+"${corpus_all[@]}"})
fi
dataset_dir=$(printf '%s\n' "$where" | sed -n 1p)
tag=$(printf '%s\n' "$where" | sed -n 2p)
if [ ${#dataset_override[@]} -eq 0 ]; then train_args+=(--dataset_dir "$dataset_dir"); fi
if [ -z "$out_dir" ]; then out_dir=$recipe/exp${tag:+-$tag}; fi

# the experiment's layout from the one place that knows it (dnnsep/training/experiment.py)
layout=$(train_py --get experiment_dir,last_path,best_path "$out_dir")
exp=$(printf '%s\n' "$layout" | sed -n 1p)
last=$(printf '%s\n' "$layout" | sed -n 2p)
best=$(printf '%s\n' "$layout" | sed -n 3p)
if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  say "== stage 1: train $exp"
  resume=()
  if [ -f "$last" ]; then
    say "(continuing from $last)"
    resume=("$last")
  fi
  DNNSEP_PROG=$prog bash "$here/train.sh" ${launch_args[@]+"${launch_args[@]}"} --config "$config" \
    ${train_args[@]+"${train_args[@]}"} "$out_dir" ${resume[@]+"${resume[@]}"}
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  say "== stage 2: test $best"
  DNNSEP_PROG=$prog bash "$here/test.sh" --model "$best" --dataset_dir "$dataset_dir"
  say "next: separate your own recording with  . ./demo.sh  or a file with  . ./separate.sh FILE  (in $recipe)"
fi
