#!/usr/bin/env bash
# LibriSpeech's data preparation for the recipe template (utils/recipe/run.sh, stage 0):
#
#   data.sh DATASET_DIR N_SOURCES [corpus options] [-- prepare options]   prepare (or find) the data
#   data.sh --where DATASET_DIR N_SOURCES [corpus options]                 only say where it is
#   data.sh --list_options | --help_options                                what the template needs
#
# Prints two lines on stdout: the dataset directory used and its tag ('' for LibriSpeech,
# 'synthetic' for the offline corpus, whose data go to DATASET_DIR-synthetic and experiments to
# exp-synthetic).  Where the download site cannot be reached and nothing is prepared, it makes an
# offline corpus (espeak-ng voices when installed, else a numpy synthesiser), loudly.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=../../../../utils/path.sh
. "$here/../../../../utils/path.sh"
prog=${DNNSEP_PROG:-run.sh}
say() { printf '%s\n' "$*" >&2; }

case "${1:-}" in
  --list_options) printf '%s\n' --synthetic --synthetic_speakers= --synthetic_utts= --synthetic_seconds= \
    --synthetic_engine= --librispeech_root= --mirror=; exit 0 ;;
  --help_options) cat <<'HELP'
LibriSpeech (egs/librispeech/common/local/data.sh):
  --librispeech_root DIR       use an extracted LibriSpeech copy instead of downloading
  --mirror URL                 download LibriSpeech from URL
  --synthetic                  use an offline corpus in LibriSpeech's layout instead (chosen by itself
                               when the download site cannot be reached and nothing is prepared):
                               espeak-ng voices where installed, else a numpy synthesiser;
                               its data go to <dataset_dir>-synthetic, experiments to exp-synthetic
  --synthetic_speakers N       speakers per subset of that corpus (default: 20)
  --synthetic_utts N           utterances per speaker (default: 10)
  --synthetic_seconds MIN-MAX  utterance lengths (default: 4-6)
  --synthetic_engine E         its voices: auto (espeak-ng where installed, else numpy), numpy, or a '+'
                               list of espeak, festival, flite (default: auto)
HELP
    exit 0 ;;
esac

where_only=false
if [ "${1:-}" = --where ]; then where_only=true; shift; fi
if [ $# -lt 2 ]; then say "usage: data.sh [--where] DATASET_DIR N_SOURCES [options] [-- prepare options]"; exit 2; fi
dataset_dir=$1 n_sources=$2
shift 2
synthetic=false speakers=20 utts=10 seconds=4-6 engine=auto source_args=() prepare_args=() corpus_given=false
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; prepare_args=("$@"); break ;;
    --synthetic) synthetic=true; shift; continue ;;
  esac
  if [ $# -lt 2 ]; then say "$prog: $1 needs a value"; exit 2; fi
  case "$1" in
    --synthetic_speakers) speakers=$2 corpus_given=true ;;
    --synthetic_utts) utts=$2 corpus_given=true ;;
    --synthetic_seconds) seconds=$2 corpus_given=true ;;
    --synthetic_engine) engine=$2 corpus_given=true ;;
    --librispeech_root | --mirror) source_args+=("$1" "$2") ;;
    *) say "$prog: unknown corpus option $1"; exit 2 ;;
  esac
  shift 2
done
for n in "$speakers" "$utts"; do
  case "$n" in '' | *[!0-9]* | 0) say "$prog: --synthetic_speakers and --synthetic_utts take a positive number, got '$n'"; exit 2 ;; esac
done
case "$seconds" in
  *-*) min_s=${seconds%-*} max_s=${seconds#*-} ;;
  *) say "$prog: --synthetic_seconds takes MIN-MAX (e.g. 4-6), got '$seconds'"; exit 2 ;;
esac

lists=${n_sources}mix/train.json
# Which data: asked for, already prepared (no network probe then), or offline by necessity.
if [ "$synthetic" = false ] && [ ${#source_args[@]} -eq 0 ] && [ ! -f "$dataset_dir/$lists" ]; then
  if [ -f "$dataset_dir-synthetic/$lists" ]; then
    synthetic=true
    if [ "$where_only" = false ]; then
      say "NOTE: using the synthetic corpus prepared earlier in $dataset_dir-synthetic; for LibriSpeech, rerun with --mirror URL or --librispeech_root DIR (or delete it with network access)."
    fi
  elif [ "$where_only" = false ] \
    && ! "$PYTHON" -c 'import urllib.request as u; u.urlopen(u.Request("https://www.openslr.org/resources/12/", method="HEAD"), timeout=10)' 2>/dev/null; then
    say "NOTE: www.openslr.org cannot be reached, so this run uses an offline SYNTHETIC corpus (--synthetic)."
    say "NOTE: for LibriSpeech, rerun with network access, --mirror URL or --librispeech_root DIR."
    synthetic=true
  fi
fi
tag=''
if [ "$synthetic" = true ]; then dataset_dir=$dataset_dir-synthetic; tag=synthetic; fi
if [ "$where_only" = true ]; then printf '%s\n%s\n' "$dataset_dir" "$tag"; exit 0; fi

kind=LibriSpeech
if [ "$synthetic" = true ]; then kind="a synthetic corpus"; fi
say "== stage 0: prepare $dataset_dir ($n_sources speakers per mixture, $kind)"
if [ "$synthetic" = true ]; then
  corpus=$dataset_dir/synthetic
  # the subsets the lists are drawn from, training's first: it gets half the voice variants, the others share
  # the rest (LibriSpeech's three when prepare is not told otherwise)
  subsets=(train-clean-100 dev-clean test-clean)
  i=0
  while [ $i -lt ${#prepare_args[@]} ]; do
    if [ "${prepare_args[$i]}" = --subsets ] && [ $((i + 3)) -lt $((${#prepare_args[@]} + 1)) ]; then
      subsets=()
      for s in "${prepare_args[@]:$((i + 1)):3}"; do
        case " ${subsets[*]-} " in *" $s "*) ;; *) subsets+=("$s") ;; esac
      done
    fi
    i=$((i + 1))
  done
  made="speakers=$speakers utts=$utts seconds=$min_s-$max_s subsets=${subsets[*]} engine=$engine"
  # made again only when missing, when it lacks a subset the lists need, or when corpus options were given
  # and differ from what it was made with
  missing=false
  for s in "${subsets[@]}"; do [ -d "$corpus/LibriSpeech/$s" ] || missing=true; done
  if [ ! -f "$corpus/.complete" ] || [ "$missing" = true ] \
    || { [ "$corpus_given" = true ] && [ "$(cat "$corpus/.complete")" != "$made" ]; }; then
    if [ -f "$corpus/.complete" ]; then say "the corpus options changed: making the offline corpus again"; fi
    rm -rf "$corpus"
    "$PYTHON" -m dnnsep.bin.make_corpus "$corpus" --n_speakers "$speakers" --utts_per_speaker "$utts" \
      --seconds "$min_s" "$max_s" --subsets "${subsets[@]}" --engine "$engine" --quiet >&2
    printf '%s\n' "$made" > "$corpus/.complete"
    prepare_args+=(--overwrite)  # the lists of the corpus it replaces are derived data
  fi
  source_args=(--librispeech_root "$corpus")
fi
DNNSEP_PROG=$prog "$PYTHON" -m dnnsep.bin.prepare "$dataset_dir" "$n_sources" \
  ${source_args[@]+"${source_args[@]}"} ${prepare_args[@]+"${prepare_args[@]}"} >&2
printf '%s\n%s\n' "$dataset_dir" "$tag"
