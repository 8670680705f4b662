"""Write a trained model as a folder ready for the Hugging Face Hub:  python -m dnnsep.bin.share --model PATH OUT_DIR

The folder holds what ``--model hf:OWNER/NAME`` loads back in every dnnsep tool:

- ``pytorch_model.bin``: the model as a dnnsep checkpoint (its name, config and weights, plain values
  only: it loads with ``torch.load(..., weights_only=True)``), with the card's facts (``card``);
- ``README.md``: the model card, with the Hub's metadata (licence, tags), the model and its config,
  the training data and options, the test figures of every evaluation of this checkpoint found in
  its experiment (``eval/*/summary.json``), the licence, and how to use and upload it;
- ``config.yaml``: the model's options, and the training config when the checkpoint holds one.

Upload it with huggingface_hub's command line (``pip install 'dnnsep[hub]'``; ``hf auth login`` once)::

    hf upload OWNER/NAME OUT_DIR .

The folder is written all at once (a temporary folder, then renamed); an existing ``OUT_DIR`` is refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .. import __version__, hub, models
from ..checkpoint import load_checkpoint, save_checkpoint
from ..cli import need_directory, printable, prog, run
from ..errors import DnnsepError
from ..pretrained import load_model
from ..training.experiment import Experiment

CARD_FILE, WEIGHTS, CONFIG = "README.md", hub.FILE_NAME, "config.yaml"
LIBRISPEECH = "LibriSpeech (CC BY 4.0, openslr.org/12)"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("python -m dnnsep.bin.share"),
        description="Write a trained model as a Hugging Face Hub folder (weights, model card, config).",
        allow_abbrev=False,
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write (must not exist)")
    parser.add_argument("--model", required=True, metavar="PATH", help="the model: an experiment's model/best.pth")
    parser.add_argument(
        "--licence",
        "--license",
        default="cc-by-4.0",
        help="the model's licence, as the Hub names them (default cc-by-4.0, the licence of LibriSpeech, "
        "the data it was trained on)",
    )
    parser.add_argument("--repo", default="OWNER/NAME", help="the repository it will be uploaded to, for the card")
    parser.add_argument(
        "--data", help=f"what it was trained on, for the card (default: from its config, {LIBRISPEECH})"
    )
    return parser


def evaluations(model_path: Path) -> list[dict[str, Any]]:
    """The ``summary.json`` of every evaluation of ``model_path`` in its experiment's ``eval/`` folder."""
    experiment = Experiment.holding(model_path.resolve())
    found = []
    for path in experiment.summaries() if experiment else []:
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and summary.get("model") == str(model_path.resolve()):
            found.append({"name": path.parent.name, **summary})
    return found


def card_facts(ckpt: dict[str, Any], model_path: Path, *, licence: str, data: str | None) -> dict[str, Any]:
    """What the card says, as plain values (also stored in the weights' file)."""
    train = ckpt.get("train_config") if isinstance(ckpt.get("train_config"), dict) else {}
    if data is None:
        dataset = train.get("dataset_dir")
        data = LIBRISPEECH + (f" mixtures of {train.get('n_sources', '?')} speakers" if train else "")
        if dataset:
            data += f" (prepared in {Path(str(dataset)).name})"
    figures = []
    for found in evaluations(model_path):
        row = {"list": found["name"], "mixtures": found.get("n_utterances")}
        for key in ("si_sdri", "sdri", "pesq", "stoi"):
            if isinstance(found.get(key), dict) and "mean" in found[key]:
                row[key] = round(float(found[key]["mean"]), 3)
        figures.append(row)
    facts = {"licence": licence, "data": data, "figures": figures, "dnnsep_version": __version__}
    for key in ("epoch", "valid_si_sdri"):
        if isinstance(ckpt.get(key), (int, float)):
            facts[key] = ckpt[key]
    facts["shared"] = time.strftime("%Y-%m-%d")
    return facts


def card_text(model: models.MaskingModel, facts: dict[str, Any], train: dict[str, Any], repo: str) -> str:
    """The model card: Hub metadata, then the model, its data, figures, licence, use and upload."""
    config = model.config.to_dict()
    rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in config.items())
    params = sum(p.numel() for p in model.parameters())
    head = {
        "license": facts["licence"],
        "library_name": "dnnsep",
        "tags": ["audio", "audio-to-audio", "speech-separation", "dnnsep", model.config_name],
    }
    figures = "\n".join(
        f"| {f['list']} | {f.get('mixtures', '?')} | "
        + " | ".join(f"{f[k]:.2f}" if k in f else "-" for k in ("si_sdri", "sdri", "pesq", "stoi"))
        + " |"
        for f in facts["figures"]
    )
    figures = (
        "| list | mixtures | SI-SDRi (dB) | SDRi (dB) | PESQ | STOI |\n|---|---|---|---|---|---|\n" + figures
        if figures
        else "No evaluation of this checkpoint was found in its experiment (run the recipe's test.sh first)."
    )
    training = ""
    if train:
        keys = ("n_sources", "sample_rate", "segment_seconds", "dynamic_mixing", "reverb", "noise", "batch_size",
                "epochs", "lr", "lr_schedule", "max_minutes")  # fmt: skip
        training = "\n".join(f"- `{k}`: `{train[k]}`" for k in keys if k in train)
        training = f"\nTraining options (all of them in `{CONFIG}`):\n\n{training}\n"
    valid = f" Best validation SI-SDRi {facts['valid_si_sdri']:.2f} dB" if "valid_si_sdri" in facts else ""
    valid += f" at epoch {facts['epoch']}." if "epoch" in facts else ("." if valid else "")
    return f"""---
{yaml.safe_dump(head, sort_keys=False).strip()}
---

# {model.model_name} ({model.config_name}) for speech separation, trained with dnnsep

A {model.model_name} separating a mixture of {model.n_sources} talkers at {model.sample_rate / 1000:g} kHz
({params / 1e6:.2f} M parameters), trained with dnnsep {facts["dnnsep_version"]}.
Shared on {facts["shared"]}.

## Use it

```bash
pip install 'dnnsep[hub]'
cd egs/librispeech/{model.config_name}
bash separate.sh talk.wav --model hf:{repo}        # your recording, at any sample rate
bash demo.sh --model hf:{repo}                     # record 5 s and separate
```

or in Python: `dnnsep.models.load("hf:{repo}").separate(mixture)`.

## Training data

{facts["data"]}.{valid}
{training}
## Test figures

{figures}

## Model

| option | value |
|---|---|
{rows}

## Licence

{facts["licence"]}.  Check the licences of the data it was trained on before using it.

## Upload

```bash
hf auth login
hf upload {repo} <this folder> .
```
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    out = need_directory(args.out_dir, what="OUT_DIR")
    if out.exists():
        raise DnnsepError(f"{out}: already exists; give a new folder (share writes a whole folder)")
    model, path = load_model(args.model, recipe_dir=".", device="cpu")  # the tools' one loading path
    if model.provenance.get("format") != "dnnsep":
        raise DnnsepError(f"{path}: a {model.provenance.get('format')} model; share shares models trained with dnnsep")
    ckpt = load_checkpoint(path)  # a dnnsep checkpoint: a file
    train = ckpt.get("train_config") if isinstance(ckpt.get("train_config"), dict) else {}
    facts = card_facts(ckpt, path, licence=printable(args.licence, limit=80), data=args.data)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_checkpoint({**model.checkpoint(), "card": facts}, tmp / WEIGHTS)
        config = {"model": {"name": model.config_name, **model.config.to_dict()}}
        if train:
            config["train_config"] = train
        (tmp / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / CARD_FILE).write_text(card_text(model, facts, train, printable(args.repo, limit=100)))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shown = [f["list"] + (f" {f['si_sdri']:.2f} dB" if "si_sdri" in f else "") for f in facts["figures"]]
    print(f"shared: {out} ({WEIGHTS}, {CARD_FILE}, {CONFIG}); test figures: {', '.join(shown) or 'none found'}")
    print(f"upload: hf upload {printable(args.repo, limit=100)} {out} .")
    return 0


if __name__ == "__main__":
    run(main)
