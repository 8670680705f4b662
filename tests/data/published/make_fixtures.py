"""Make (or check) the asteroid reference fixtures of tests/test_published.py, with asteroid's own code.

Each fixture is a folder ``<name>/`` holding a tiny random-weight asteroid model as asteroid publishes
it (``pytorch_model.bin``: ``serialize()`` then ``torch.save``; one with a publication's metadata:
numpy metrics, licence notice, data licences) and ``reference.pt``, plain tensors: an input
``(batch, time)`` and asteroid's output ``(batch, n_src, time)`` on it, in float32 (``output``) and
with the model and input in float64 (``output_float64``: what the conversion must give exactly, the
float32 outputs differing by rounding only).  CI compares dnnsep's converted models with these
without asteroid.

asteroid is never a dependency of dnnsep; run this in a scratch venv that sees this one's torch::

    python3 -m venv --system-site-packages /tmp/astvenv
    /tmp/astvenv/bin/pip install --no-deps asteroid==0.7.0 asteroid-filterbanks==0.4.0
    /tmp/astvenv/bin/pip install huggingface_hub "pytorch_lightning>=2,<2.6"  # asteroid's imports, serialize()
    /tmp/astvenv/bin/python tests/data/published/make_fixtures.py            # rewrite the fixtures here
    /tmp/astvenv/bin/python tests/data/published/make_fixtures.py --check    # check them, write nothing here

``--check``: asteroid recomputes every committed fixture's output from its committed file and input,
and a fresh set made in a temporary folder is converted by dnnsep and compared with asteroid; it
prints the largest difference of each (relative to the output's RMS) and exits 1 above ``TOLERANCE``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-5  # max |dnnsep - asteroid| / RMS(asteroid)

# name: (asteroid class, its arguments, input time in samples); tiny, covering the options that matter
FIXTURES = {
    "conv_tasnet_8k_sigmoid": (
        "ConvTasNet",
        dict(n_src=2, n_filters=16, kernel_size=16, stride=8, bn_chan=8, hid_chan=16, skip_chan=8,
             conv_kernel_size=3, n_blocks=3, n_repeats=2, mask_act="sigmoid", sample_rate=8000),
        1203,
    ),
    "conv_tasnet_16k_relu_3src": (
        "ConvTasNet",
        dict(n_src=3, n_filters=12, kernel_size=8, stride=4, bn_chan=6, hid_chan=10, skip_chan=4,
             conv_kernel_size=5, n_blocks=2, n_repeats=2, mask_act="relu", encoder_activation="relu",
             sample_rate=16000),
        1999,
    ),
    "conv_tasnet_8k_softmax_cgln": (
        "ConvTasNet",
        dict(n_src=2, n_filters=8, kernel_size=4, stride=2, bn_chan=8, hid_chan=8, skip_chan=8,
             conv_kernel_size=3, n_blocks=2, n_repeats=1, norm_type="cgLN", mask_act="softmax", sample_rate=8000),
        801,
    ),
    "dprnn_8k_published": (
        "DPRNNTasNet",
        dict(n_src=2, n_filters=16, kernel_size=8, stride=4, bn_chan=8, hid_size=6, chunk_size=10, hop_size=5,
             n_repeats=2, mask_act="sigmoid", sample_rate=8000),
        1601,
    ),
    "dprnn_16k_relu_3src": (
        "DPRNNTasNet",
        dict(n_src=3, n_filters=8, kernel_size=2, stride=1, bn_chan=6, hid_size=4, chunk_size=12, hop_size=4,
             n_repeats=1, mask_act="relu", encoder_activation="relu", sample_rate=16000),
        1000,
    ),
}  # fmt: skip


def make(out: Path) -> None:
    """Write every fixture under ``out``."""
    import asteroid
    import asteroid.models
    from asteroid.models.publisher import make_license_notice

    if asteroid.__version__ != "0.7.0":
        sys.exit(f"make_fixtures: asteroid 0.7.0 wanted, found {asteroid.__version__}")
    for i, (name, (model_name, args, time)) in enumerate(FIXTURES.items()):
        torch.manual_seed(1000 + i)
        model = getattr(asteroid.models, model_name)(**args).eval()
        with torch.no_grad():
            for p in model.parameters():  # move every weight off its initial value (gLN's 1 and 0, PReLU's 0.25)
                p.add_(0.2 * torch.randn_like(p))
        x = 0.3 * torch.randn(2, time)
        with torch.no_grad():
            y = model(x)
            y64 = model.double()(x.double())
        model.float()
        published = model.serialize()
        if name.endswith("_published"):  # what asteroid's recipes add before publishing (eval.py, publisher.py)
            data = [
                dict(
                    title="LibriMix",
                    title_link="https://github.com/JorisCos/LibriMix",
                    author="Joris Cosentino",
                    author_link="https://github.com/JorisCos",
                    license="CC BY 4.0",
                    license_link="https://creativecommons.org/licenses/by/4.0/",
                    non_commercial=False,
                )
            ]
            published.update(dataset="LibriMix", task="sep_clean", licenses=data)
            published["infos"]["final_metrics"] = {"si_sdr": np.float64(10.25), "n_utterances": np.int64(3000)}
            published["infos"]["license_note"] = make_license_notice(name, data, uploader="dnnsep tests")
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(published, folder / "pytorch_model.bin")
        torch.save({"input": x, "output": y, "output_float64": y64}, folder / "reference.pt")
        print(
            f"{folder}: {model_name}, {sum(p.numel() for p in model.parameters())} parameters, output {tuple(y.shape)}"
        )


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / RMS(want)."""
    return float((got - want).abs().max() / want.pow(2).mean().sqrt())


def check() -> int:
    """asteroid on the committed fixtures; dnnsep against asteroid on a fresh set.  0 if all within TOLERANCE."""
    import asteroid.models

    from dnnsep import models
    from dnnsep.checkpoint import load_checkpoint

    worst = 0.0
    for name in FIXTURES:
        published = load_checkpoint(HERE / name / "pytorch_model.bin")  # weights_only, numpy scalars allowed
        model = asteroid.models.get(published["model_name"])(**published["model_args"])
        model.load_state_dict(published["state_dict"])
        ref = torch.load(HERE / name / "reference.pt", weights_only=True)
        with torch.no_grad():
            err = relative_error(model.eval()(ref["input"]), ref["output"])
            err64 = relative_error(model.double()(ref["input"].double()), ref["output_float64"])
        worst = max(worst, err, err64)
        print(f"committed {name}: asteroid now vs committed output {err:.2e} (float64: {err64:.2e})")
    with tempfile.TemporaryDirectory() as tmp:
        make(Path(tmp))
        for name in FIXTURES:
            ref = torch.load(Path(tmp) / name / "reference.pt", weights_only=True)
            ours = models.load(Path(tmp) / name).eval()
            with torch.no_grad():
                err = relative_error(ours(ref["input"]), ref["output"])
                err64 = relative_error(ours.double()(ref["input"].double()), ref["output_float64"])
            worst = max(worst, err)
            print(f"fresh {name}: dnnsep vs asteroid {err:.2e} (float64: {err64:.2e})")
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
