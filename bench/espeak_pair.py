"""Separate a mixture of two espeak-ng voices the model never heard, and score it against each voice.

The voices are a female and a male espeak-ng variant that no training speaker of ``--corpus`` used
(read from its ``SPEAKERS.TXT``; the offline corpus gives every subset its own variants), at espeak's
own pitch and speed, reading sentences of their own.  Each is synthesised with ``espeak-ng -v <voice>
--stdout``, resampled to 16 kHz, set to the same RMS; the mixture is their sum.  The SI-SDRi (float64,
:func:`bench_quality.si_sdri64`) is printed per voice and written, with the wav files, to ``--out``::

    PYTHONPATH=src python bench/espeak_pair.py EXP_DIR/model/best.pth --corpus CORPUS_DIR
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import si_sdr64, si_sdri64  # noqa: E402

TEXTS = (
    "The old captain carried a lantern across the narrow bridge before the evening train arrived.",
    "Seven quiet children painted golden pictures of the distant mountain in their small kitchen.",
)
LANGUAGE = "en-us"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="a dnnsep model checkpoint (best.pth)")
    p.add_argument("--corpus", required=True, help="the offline corpus it was trained on (holds LibriSpeech/)")
    p.add_argument("--train_subset", help="the corpus subset it trained on (default: from the model's training lists)")
    p.add_argument("--voices", nargs=2, metavar=("FEMALE", "MALE"), help="unheard variants to use (default: chosen)")
    p.add_argument("--out", default="espeak_pair_out")
    return p


def trained_subset(model: str) -> str:
    """The corpus subset of the model's training list (its train_config's dataset_dir, <n>mix/train.json)."""
    from dnnsep.checkpoint import load_checkpoint

    config = load_checkpoint(model).get("train_config") or {}
    lists = Path(config.get("dataset_dir", "")) / f"{config.get('n_sources', 2)}mix" / "train.json"
    try:
        return json.loads(lists.read_text())["subset"]
    except (OSError, ValueError, KeyError):
        raise SystemExit(f"espeak_pair: cannot read the training list {lists}: pass --train_subset") from None


def heard_variants(corpus: Path, train_subset: str) -> set[str]:
    text = (corpus / "LibriSpeech" / "SPEAKERS.TXT").read_text()
    return {m.group(1) for m in re.finditer(rf"\|\s*{re.escape(train_subset)}\s*\|.*?\+(\S+)", text)}


def unheard_variants(corpus: Path, train_subset: str) -> tuple[str, str]:
    """A female and a male variant of the corpus's other subsets that no training speaker used."""
    from dnnsep.data.tts import FEMALE, MALE

    text = (corpus / "LibriSpeech" / "SPEAKERS.TXT").read_text()
    heard = heard_variants(corpus, train_subset)
    used = {m.group(1) for m in re.finditer(r"espeak-ng \S+\+(\S+)", text)}
    pick = [
        next(v for v in sorted(pool, key=lambda v: (v not in used, v)) if v not in heard) for pool in (FEMALE, MALE)
    ]
    return pick[0], pick[1]


def speak(voice: str, text: str, rate: int = 16000) -> np.ndarray:
    from dnnsep.data.tts import resample

    wav = subprocess.run(["espeak-ng", "-v", f"{LANGUAGE}+{voice}", "--stdout", text], capture_output=True, check=True)
    audio, sr = sf.read(io.BytesIO(wav.stdout), dtype="float64")
    return resample(audio, sr, rate)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    import torch

    from dnnsep.models import load

    train_subset = args.train_subset or trained_subset(args.model)
    if args.voices:
        voices = tuple(args.voices)
        heard = sorted(set(voices) & heard_variants(Path(args.corpus), train_subset))
        if heard:
            raise SystemExit(
                f"espeak_pair: --voices {' '.join(heard)} trained on ({train_subset}): choose unheard ones"
            )
    else:
        voices = unheard_variants(Path(args.corpus), train_subset)
    speech = [speak(v, t) for v, t in zip(voices, TEXTS)]
    n = min(len(s) for s in speech)
    sources = np.stack([s[:n] / np.sqrt(np.mean(s[:n] ** 2)) * 0.05 for s in speech])  # (2, time), equal RMS
    mixture = sources.sum(0)
    model = load(args.model).eval()
    with torch.inference_mode():
        estimates = model(torch.tensor(mixture, dtype=torch.float32)[None])[0].double().numpy()  # (2, time)
    total = si_sdri64(estimates, sources, mixture)
    pair = [[si_sdr64(estimates[i], sources[j]) for j in range(2)] for i in range(2)]  # (estimate, voice)
    perm = (0, 1) if pair[0][0] + pair[1][1] >= pair[1][0] + pair[0][1] else (1, 0)  # estimate of each voice
    per_voice = {v: pair[perm[j]][j] - si_sdr64(mixture, sources[j]) for j, v in enumerate(voices)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sf.write(out / "mixture.wav", mixture, 16000)
    for i in range(2):
        sf.write(out / f"voice{i + 1}_{voices[i]}.wav", sources[i], 16000)
        sf.write(out / f"estimate{i + 1}.wav", estimates[i], 16000)
    result = {"voices": [f"{LANGUAGE}+{v}" for v in voices], "train_subset": train_subset, "seconds": n / 16000,
              "si_sdri": total,
              "si_sdri_per_voice": per_voice, "model": str(args.model)}  # fmt: skip
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(f"{' + '.join(result['voices'])} ({n / 16000:.1f} s): SI-SDRi {total:.2f} dB; "
          + ", ".join(f"{v} {d:.2f} dB" for v, d in per_voice.items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
