"""Make (or check) the SpeechBrain reference fixtures of tests/test_published.py, with SpeechBrain's own code.

Each fixture is a folder ``<name>/`` holding a tiny random-weight SepFormer as SpeechBrain publishes
one (``hyperparams.yaml``, the HyperPyYAML its hub repositories hold, and ``encoder.ckpt``,
``masknet.ckpt``, ``decoder.ckpt``: ``torch.save`` of each module's state dict, as its checkpointer
writes them), a model card ``README.md`` stating a licence, and ``reference.pt``, plain tensors: an
input ``(batch, time)`` and SpeechBrain's ``SepformerSeparation.separate_batch`` on it, loaded from
that folder by ``from_hparams`` (``(batch, time, n_src)``, as SpeechBrain returns it), in float32
(``output``) and with the modules and input in float64 (``output_float64``).  CI compares dnnsep's
converted models with these without SpeechBrain.

SpeechBrain is never a dependency of dnnsep; run this in a scratch venv that sees this one's torch.
SpeechBrain 1.1 imports torchaudio when it is imported, which has no build for this torch: the
``torchaudio`` stand-in below is import-only (separation never calls it), put first on the path::

    /tmp/astvenv/bin/pip install --no-deps speechbrain==1.1.0 hyperpyyaml ruamel.yaml sentencepiece joblib
    /tmp/astvenv/bin/python tests/data/published/make_speechbrain_fixtures.py          # rewrite them here
    /tmp/astvenv/bin/python tests/data/published/make_speechbrain_fixtures.py --check  # check, write nothing

``--check``: SpeechBrain recomputes every committed fixture's output from its committed files, and a
fresh set made in a temporary folder is converted by dnnsep and compared with SpeechBrain; it prints
the largest difference of each (relative to the output's RMS) and exits 1 above ``TOLERANCE``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

import torch
from make_fixtures import relative_error  # this folder's asteroid script

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-5  # max |dnnsep - SpeechBrain| / RMS(SpeechBrain)

# name: (sizes, input time in samples); tiny, with 2 and 3 speakers, both rates, lengths that pad differently
FIXTURES = {
    "sepformer_8k_2src": (
        dict(sample_rate=8000, num_spks=2, N=16, F=4, L=8, K=10, blocks=2, intra=2, inter=1, heads=2, ffn=12),
        1203,
    ),
    "sepformer_16k_3src": (
        dict(sample_rate=16000, num_spks=3, N=12, F=6, L=4, K=6, blocks=1, intra=1, inter=2, heads=3, ffn=10),
        1005,
    ),
}

HYPERPARAMS = """\
# ################################
# Model: Inference for source separation with SepFormer
# https://arxiv.org/abs/2010.13154
# A tiny random-weight fixture of dnnsep's tests (tests/data/published/make_speechbrain_fixtures.py),
# laid out as SpeechBrain's published SepFormers are.
# ################################

sample_rate: {sample_rate}
num_spks: {num_spks}

# Encoder parameters
N_encoder_out: {N}
out_channels: {F}
kernel_size: {L}
kernel_stride: {stride}

# Specifying the network
Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
    kernel_size: !ref <kernel_size>
    out_channels: !ref <N_encoder_out>

SBtfintra: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
    num_layers: {intra}
    d_model: !ref <out_channels>
    nhead: {heads}
    d_ffn: {ffn}
    dropout: 0
    use_positional_encoding: True
    norm_before: True

SBtfinter: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
    num_layers: {inter}
    d_model: !ref <out_channels>
    nhead: {heads}
    d_ffn: {ffn}
    dropout: 0
    use_positional_encoding: True
    norm_before: True

MaskNet: !new:speechbrain.lobes.models.dual_path.Dual_Path_Model
    num_spks: !ref <num_spks>
    in_channels: !ref <N_encoder_out>
    out_channels: !ref <out_channels>
    num_layers: {blocks}
    K: {K}
    intra_model: !ref <SBtfintra>
    inter_model: !ref <SBtfinter>
    norm: ln
    linear_layer_after_inter_intra: False
    skip_around_intra: True

Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
    in_channels: !ref <N_encoder_out>
    out_channels: 1
    kernel_size: !ref <kernel_size>
    stride: !ref <kernel_stride>
    bias: False

modules:
    encoder: !ref <Encoder>
    decoder: !ref <Decoder>
    masknet: !ref <MaskNet>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <Encoder>
        masknet: !ref <MaskNet>
        decoder: !ref <Decoder>
"""

CARD = """\
---
language: "en"
tags:
- audio-source-separation
- Source Separation
- Speech Separation
- SepFormer
license: "apache-2.0"
---
A tiny random-weight SepFormer in SpeechBrain's published layout, for dnnsep's tests.
"""


def _speechbrain():
    """SpeechBrain's separation interface, imported with an import-only torchaudio stand-in if needed."""
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("torchaudio")
        stand_in.__version__ = "0.0 (dnnsep fixture stand-in)"
        stand_in.list_audio_backends = lambda: ["soundfile"]
        sys.modules["torchaudio"] = stand_in
    import speechbrain
    from speechbrain.inference.separation import SepformerSeparation

    if speechbrain.__version__ != "1.1.0":
        sys.exit(f"make_speechbrain_fixtures: SpeechBrain 1.1.0 wanted, found {speechbrain.__version__}")
    return SepformerSeparation


def separate(folder: Path, x: torch.Tensor, *, float64: bool = False) -> torch.Tensor:
    """SpeechBrain's ``separate_batch`` of the model in ``folder`` (loaded by ``from_hparams``) on ``x``."""
    separation = _speechbrain()
    with tempfile.TemporaryDirectory() as save:
        model = separation.from_hparams(source=str(folder), savedir=save, run_opts={"device": "cpu"})
        model.mods.eval()
        if float64:
            model.mods.double()
            x = x.double()
        with torch.no_grad():
            return model.separate_batch(x)


def make(out: Path) -> None:
    """Write every fixture under ``out``."""
    separation = _speechbrain()  # noqa: F841 -- SpeechBrain importable, at the right version
    from hyperpyyaml import load_hyperpyyaml

    for i, (name, (sizes, time)) in enumerate(FIXTURES.items()):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        text = HYPERPARAMS.format(stride=sizes["L"] // 2, **sizes)
        (folder / "hyperparams.yaml").write_text(text)
        (folder / "README.md").write_text(CARD)
        torch.manual_seed(2000 + i)
        hparams = load_hyperpyyaml(text)  # SpeechBrain builds the modules from the file it will read back
        for role, module in hparams["modules"].items():
            with torch.no_grad():
                for p in module.parameters():  # off their initial values (norms' 1 and 0, PReLU's 0.25)
                    p.add_(0.2 * torch.randn_like(p))
            torch.save(module.state_dict(), folder / f"{role}.ckpt")
        x = 0.3 * torch.randn(2, time)
        y = separate(folder, x)
        y64 = separate(folder, x, float64=True)
        torch.save({"input": x, "output": y, "output_float64": y64}, folder / "reference.pt")
        count = sum(p.numel() for m in hparams["modules"].values() for p in m.parameters())
        print(f"{folder}: SepFormer, {count} parameters, output {tuple(y.shape)}")


def check() -> int:
    """SpeechBrain on the committed fixtures; dnnsep against SpeechBrain on a fresh set.  0 if all within TOLERANCE."""
    from dnnsep import models

    worst = 0.0
    for name in FIXTURES:
        ref = torch.load(HERE / name / "reference.pt", weights_only=True)
        err = relative_error(separate(HERE / name, ref["input"]), ref["output"])
        err64 = relative_error(separate(HERE / name, ref["input"], float64=True), ref["output_float64"])
        worst = max(worst, err, err64)
        print(f"committed {name}: SpeechBrain now vs committed output {err:.2e} (float64: {err64:.2e})")
    with tempfile.TemporaryDirectory() as tmp:
        make(Path(tmp))
        for name in FIXTURES:
            ref = torch.load(Path(tmp) / name / "reference.pt", weights_only=True)
            ours = models.load(Path(tmp) / name).eval()
            with torch.no_grad():
                err = relative_error(ours(ref["input"]).transpose(1, 2), ref["output"])
                err64 = relative_error(ours.double()(ref["input"].double()).transpose(1, 2), ref["output_float64"])
            worst = max(worst, err)
            print(f"fresh {name}: dnnsep vs SpeechBrain {err:.2e} (float64: {err64:.2e})")
    print(f"largest: {worst:.2e} (tolerance {TOLERANCE:g})")
    return int(worst > TOLERANCE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where to write the fixtures (default: here)")
    parser.add_argument("--check", action="store_true", help="check the committed fixtures; write nothing here")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    make(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
