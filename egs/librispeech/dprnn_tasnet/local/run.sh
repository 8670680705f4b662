#!/usr/bin/env bash
# Child of ../run.sh: stage 0 prepares the data, 1 trains, 2 tests.  See usage below.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
recipe=$(cd "$here/.." && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../../../../utils/path.sh
. "$here/../../../../utils/path.sh"

usage() {
  cat <<USAGE
usage: run.sh [options] [--key value ...]

Stages: 0 prepare the data (download LibriSpeech, or a synthetic corpus), 1 train, 2 test.

  --stage N / --stop_stage N   run stages N..M only (default: 0 to 2)
  --config FILE                training config (default: conf/default.yaml; conf/mini.yaml runs on a CPU
                               in minutes), relative to your directory or else to the recipe's.
                               Its 'prepare:' section gives the options of stage 0.
  --out_dir DIR                experiments go under DIR (default: exp, or exp-synthetic)
  --synthetic                  make a small synthetic LibriSpeech-like corpus instead of downloading
                               (chosen automatically when the download site cannot be reached);
                               its data and experiments go to <dataset_dir>-synthetic and exp-synthetic
  --synthetic_speakers N       speakers per subset of that corpus (default: 20)
  --synthetic_utts N           utterances per speaker (default: 10)
  --librispeech_root DIR       use an extracted LibriSpeech copy instead of downloading
  --mirror URL                 download LibriSpeech from URL
  --nproc_per_node N           train on N GPUs (torchrun)
  --key value                  any training option (e.g. --epochs 20 --device cpu --dataset_dir DIR)

Rerunning continues an interrupted training from its model/last.pth.
USAGE
}

# --config FILE: as given (relative to your directory), else relative to the recipe (conf/mini.yaml).
resolve_config() {
  if [ ! -f "$1" ] && [ -f "$here/../$1" ]; then printf '%s\n' "$here/../$1"; else printf '%s\n' "$1"; fi
}

echo "$0 $*" >&2
stage=0 stop_stage=2 config=$recipe/conf/default.yaml out_dir='' synthetic=false
synthetic_speakers=20 synthetic_utts=10 user_dataset_dir=false
source_args=() train_args=() launch_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --synthetic) synthetic=true; shift; continue ;;
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;  # --key=value -> --key value
    --*) ;;
    *) echo "$0: unexpected argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  if [ $# -lt 2 ]; then echo "$0: $1 needs a value (see --help)" >&2; exit 2; fi
  case "$1" in
    --stage) stage=$2 ;;
    --stop_stage) stop_stage=$2 ;;
    --config) config=$(resolve_config "$2") ;;
    --out_dir) out_dir=$2 ;;
    --synthetic_speakers) synthetic_speakers=$2 ;;
    --synthetic_utts) synthetic_utts=$2 ;;
    --librispeech_root | --mirror) source_args+=("$1" "$2") ;;
    --nproc_per_node) launch_args+=("$1" "$2") ;;
    --dataset_dir) user_dataset_dir=true; train_args+=("$1" "$2") ;;
    *) train_args+=("$1" "$2") ;;
  esac
  shift 2
done
for n in "$stage" "$stop_stage" "$synthetic_speakers" "$synthetic_utts"; do
  case "$n" in '' | *[!0-9]*) echo "$0: expected a number, got '$n'" >&2; exit 2 ;; esac
done

train_py() {  # python -m dnnsep.bin.train with this run's config and options
  "$PYTHON" -m dnnsep.bin.train --config "$config" ${train_args[@]+"${train_args[@]}"} "$@"
}
# One call resolves what the stages need: dataset_dir, n_sources, the experiment directory under
# OUT_DIR (printed relative to it) and the config's prepare options (one per line, to the end).
resolved=$(train_py --get dataset_dir,n_sources,experiment_dir,prepare_args .)
line_no=0 prepare_args=()
while IFS= read -r line; do
  line_no=$((line_no + 1))
  case $line_no in
    1) dataset_dir=$line ;;
    2) n_sources=$line ;;
    3) exp_name=$line ;;
    *) prepare_args+=("$line") ;;
  esac
done <<RESOLVED
$resolved
RESOLVED

# Offline and nothing prepared yet: fall back to the synthetic corpus, loudly.
if [ "$synthetic" = false ] && [ "$stage" -le 0 ] && [ ${#source_args[@]} -eq 0 ] \
  && [ ! -f "$dataset_dir/${n_sources}mix/train.json" ] \
  && ! "$PYTHON" -c 'import urllib.request as u; u.urlopen(u.Request("https://www.openslr.org/resources/12/", method="HEAD"), timeout=10)' 2>/dev/null; then
  echo "NOTE: www.openslr.org cannot be reached, so this run uses a small SYNTHETIC corpus (--synthetic)." >&2
  echo "NOTE: for LibriSpeech, rerun with network access, --mirror URL or --librispeech_root DIR." >&2
  synthetic=true
fi
if [ "$synthetic" = true ]; then
  if [ "$user_dataset_dir" = false ]; then
    dataset_dir=$dataset_dir-synthetic
    train_args+=(--dataset_dir "$dataset_dir")
  fi
  out_dir=${out_dir:-$recipe/exp-synthetic}
fi
out_dir=${out_dir:-$recipe/exp}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "== stage 0: prepare $dataset_dir ($n_sources speakers per mixture)" >&2
  if [ "$synthetic" = true ]; then
    corpus=$dataset_dir/synthetic
    if [ ! -f "$corpus/.complete" ]; then
      "$PYTHON" -m dnnsep.bin.make_corpus "$corpus" --n_speakers "$synthetic_speakers" \
        --utts_per_speaker "$synthetic_utts" --seconds 4 6
      touch "$corpus/.complete"
    fi
    source_args=(--librispeech_root "$corpus")
  fi
  bash "$recipe/../common/local/prepare.sh" "$dataset_dir" "$n_sources" \
    ${source_args[@]+"${source_args[@]}"} ${prepare_args[@]+"${prepare_args[@]}"}
fi

exp=$out_dir/$exp_name
if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "== stage 1: train $exp" >&2
  resume=()
  if [ -f "$exp/model/last.pth" ]; then
    echo "(continuing from $exp/model/last.pth)" >&2
    resume=("$exp/model/last.pth")
  fi
  bash "$here/train.sh" ${launch_args[@]+"${launch_args[@]}"} --config "$config" \
    ${train_args[@]+"${train_args[@]}"} "$out_dir" ${resume[@]+"${resume[@]}"}
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "== stage 2: test $exp/model/best.pth" >&2
  bash "$here/test.sh" "$exp/model/best.pth" --dataset_dir "$dataset_dir"
fi
