"""Write an offline speech corpus in LibriSpeech's layout (where LibriSpeech cannot be downloaded; tests, demos).

python -m dnnsep.bin.make_corpus DIR [--engine auto|numpy|espeak+festival+flite] [--n_speakers 8]
    [--utts_per_speaker 3] [--seconds 4 6] [--avoid ENGINE ...]
egs/librispeech/common/prepare.sh DATASET_DIR 2 --librispeech_root DIR
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..cli import run
from ..data.synthetic import SUBSETS, make_mirror
from ..data.tts import AUTO, SYNTHESISERS, make_offline_corpus


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dnnsep.bin.make_corpus",
        description="Write DIR/LibriSpeech/<subset>/<speaker>/<chapter>/*.flac of synthesised speech: voices of "
        "espeak-ng, festival or flite (one per speaker, none in two subsets) reading generated sentences, or a "
        "NumPy synthesiser.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("root", metavar="DIR", help="output folder (DIR/LibriSpeech is created)")
    parser.add_argument(
        "--engine",
        default="auto",
        help=f"a '+' list of {', '.join(SYNTHESISERS)} (speakers shared out between them), numpy, or auto: "
        f"{' and '.join(AUTO)} where installed, else numpy",
    )
    parser.add_argument("--subsets", nargs="+", default=list(SUBSETS), help="subset folders to write")
    parser.add_argument("--n_speakers", type=int, default=8, help="speakers per subset")
    parser.add_argument("--utts_per_speaker", type=int, default=3, help="utterances per speaker")
    parser.add_argument("--seconds", type=float, nargs=2, default=[4.0, 6.0], metavar=("MIN", "MAX"),
                        help="utterance length range")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="the corpus (and the split of voices between subsets)")
    parser.add_argument("--content_seed", type=int, help="espeak: new voices and sentences on --seed's split")
    parser.add_argument("--only", nargs="+", metavar="SUBSET", help="espeak: write only these of --subsets")
    parser.add_argument("--avoid", nargs="+", default=[], choices=SYNTHESISERS, metavar="ENGINE",
                        help="engines a model to be tested on this corpus was trained on: leave out voices "
                        "recorded from a person they voice (festival's slt after flite's)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="utterances synthesised at a time")
    parser.add_argument("--quiet", action="store_true", help="no hint of what to run next (run.sh runs it)")
    parser.add_argument(
        "--mirror_dir", metavar="DIR", help="also write <subset>.tar.gz archives and md5sum.txt here (a --mirror)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    made = make_offline_corpus(
        args.root,
        engine=args.engine,
        subsets=args.subsets,
        n_speakers=args.n_speakers,
        utts_per_speaker=args.utts_per_speaker,
        seconds=tuple(args.seconds),
        seed=args.seed,
        workers=args.workers,
        avoid=args.avoid,
        **{k: v for k, v in (("content_seed", args.content_seed), ("only", args.only)) if v is not None},
    )
    written = len(args.only) if args.only else len(args.subsets)
    n = written * args.n_speakers * args.utts_per_speaker
    if made.engine != "numpy":
        names = " + ".join("espeak-ng" if e == "espeak" else e for e in made.engine.split("+"))
        print(f"synthesised with {names}: {made.voices} voices, none in two subsets, {n} utterances")
    else:
        why = "--engine numpy" if args.engine == "numpy" else "espeak-ng not found"
        print(f"{why}: numpy synthesiser, {made.voices} voices, {n} utterances (speech-like, not speech)")
    if not args.quiet:
        print(f"wrote {made.path}; next: prepare.sh DATASET_DIR 2 --librispeech_root {made.path}")
    if args.mirror_dir:
        mirror = make_mirror(Path(args.root), args.mirror_dir, args.subsets)
        print(f"wrote {', '.join(f'{s}.tar.gz' for s in args.subsets)} and md5sum.txt in {mirror}")
    return 0


if __name__ == "__main__":
    run(main)
