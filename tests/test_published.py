"""Separators asteroid published, loaded as dnnsep models: asteroid's own output, and nothing unsafe runs.

The fixtures under tests/data/published were made once with asteroid 0.7 by make_fixtures.py there
(``--check`` reruns asteroid against them); these tests need no asteroid.
"""

from __future__ import annotations

import io
import re
import resource
import time
import zipfile
from pathlib import Path

import pytest
import torch

from dnnsep import models, pretrained
from dnnsep.checkpoint import load_checkpoint
from dnnsep.errors import CheckpointError

PUBLISHED = Path(__file__).parent / "data" / "published"
FIXTURES = sorted(p.name for p in PUBLISHED.iterdir() if (p / "pytorch_model.bin").is_file())
TOLERANCE = 1e-5  # max |dnnsep - asteroid| / RMS(asteroid), float32
RAN: list[str] = []  # what a hostile file's code would record, had it run


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.pow(2).mean().sqrt())


def published(name: str = "dprnn_8k_published") -> dict:
    return load_checkpoint(PUBLISHED / name / "pytorch_model.bin")


def test_the_fixtures_cover_both_models_sources_rates_and_masks():
    args = [published(name)["model_args"] for name in FIXTURES]
    assert {published(name)["model_name"] for name in FIXTURES} == {"ConvTasNet", "DPRNNTasNet"}
    assert {a["n_src"] for a in args} == {2, 3} and {a["sample_rate"] for a in args} == {8000, 16000}
    assert {a["mask_act"] for a in args} == {"sigmoid", "relu", "softmax"}
    assert sum(f.stat().st_size for f in PUBLISHED.glob("*/*")) < 1_500_000  # with SpeechBrain's: 1.13 MB
    inputs = [torch.load(PUBLISHED / name / "reference.pt", weights_only=True)["input"] for name in FIXTURES]
    tails = [(x.shape[-1] - a["kernel_size"]) % a["stride"] for x, a in zip(inputs, args)]
    assert sum(t > 0 for t in tails) >= 3  # asteroid's zero tail
    frames = [(x.shape[-1] - a["kernel_size"]) // a["stride"] + 1 for x, a in zip(inputs, args)]
    dprnn = [(f, a) for f, a in zip(frames, args) if "chunk_size" in a]
    assert all((f + a["chunk_size"]) % a["hop_size"] for f, a in dprnn)  # asteroid's unfold drops a partial chunk


@pytest.mark.parametrize("name", FIXTURES)
def test_a_converted_model_gives_asteroids_output(name):
    model = models.load(PUBLISHED / name).eval()
    ref = torch.load(PUBLISHED / name / "reference.pt", weights_only=True)
    assert type(model).model_name == published(name)["model_name"]
    assert model.provenance["format"] == "asteroid 0.7.0"
    with torch.no_grad():
        ours = model(ref["input"])
        assert relative_error(ours, ref["output"]) < TOLERANCE
        # in float64 the same computation, to rounding: the float32 difference is rounding only
        assert relative_error(model.double()(ref["input"].double()), ref["output_float64"]) < 1e-10
    tail = (ref["input"].shape[-1] - model.config.kernel_size) % model.config.stride
    if tail:  # asteroid leaves the samples after the last full window at zero
        assert ref["output"][..., -tail:].abs().max() == 0 and ours[..., -tail:].abs().max() == 0


def test_file_and_folder_load_through_the_registry_and_the_tools(tmp_path, capsys):
    folder = PUBLISHED / "dprnn_8k_published"
    ref = torch.load(folder / "reference.pt", weights_only=True)
    for given in (folder, folder / "pytorch_model.bin", str(folder)):
        for net in (models.load(given).eval(), pretrained.load_model(given, recipe_dir=tmp_path, device="cpu")[0]):
            with torch.no_grad():
                assert relative_error(net(ref["input"]), ref["output"]) < TOLERANCE
    _, path = pretrained.load_model(folder, recipe_dir=tmp_path, device="cpu")
    assert path == folder / "pytorch_model.bin"
    said = capsys.readouterr().err.splitlines()[-1]
    assert said == (
        f"model: {path} (asteroid 0.7.0 DPRNNTasNet as dnnsep's DPRNNTasNet, 8 kHz, 2 sources; "
        "licence: Attribution-ShareAlike 3.0 Unported; data LibriMix: CC BY 4.0)"
    )
    # a dnnsep checkpoint loads as before, and says nothing more
    models.load(folder).save(tmp_path / "best.pth")
    net, _ = pretrained.load_model(tmp_path / "best.pth", recipe_dir=tmp_path, device="cpu")
    assert net.provenance == {"format": "dnnsep"} and net.config.head == "gated"
    assert capsys.readouterr().err == ""
    (tmp_path / "empty").mkdir()
    without = r"empty: is a directory without a model \(pytorch_model\.bin, best\.pth, or SpeechBrain's"
    with pytest.raises(CheckpointError, match=without):
        models.load(tmp_path / "empty")


def test_numpy_scalars_in_infos_load_under_numpy_1_and_2_names(tmp_path):
    source = PUBLISHED / "dprnn_8k_published" / "pytorch_model.bin"
    with open(source, "rb") as f:
        assert "numpy._core.multiarray.scalar" in torch.serialization.get_unsafe_globals_in_checkpoint(f)
    metrics = published()["infos"]["final_metrics"]
    assert float(metrics["si_sdr"]) == 10.25 and int(metrics["n_utterances"]) == 3000
    # numpy 1 wrote the same reconstructor as numpy.core.multiarray.scalar
    old = tmp_path / "numpy1.bin"
    _rewrite_pickle(source, old, b"numpy._core.multiarray\nscalar\n", b"numpy.core.multiarray\nscalar\n")
    with open(old, "rb") as f:
        assert "numpy.core.multiarray.scalar" in torch.serialization.get_unsafe_globals_in_checkpoint(f)
    assert float(load_checkpoint(old)["infos"]["final_metrics"]["si_sdr"]) == 10.25
    assert models.load(old).provenance["licence"].startswith("Attribution-ShareAlike 3.0")


def _rewrite_pickle(source: Path, target: Path, old: bytes, new: bytes) -> None:
    """Copy a torch zip file, replacing ``old`` by ``new`` in its pickle (protocol 2: GLOBAL names are text)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new)
            zout.writestr(item, data)


def _run(what: str) -> str:
    RAN.append(what)
    return what


class Payload:
    """Unpickling it calls :func:`_run`: code from the file."""

    def __reduce__(self):
        return (_run, ("reduce",))


class Stateful:
    """Unpickling it rebuilds a class instance and calls its ``__setstate__``."""

    def __setstate__(self, state):
        _run("setstate")


@pytest.mark.parametrize("payload", [Payload(), Stateful()], ids=["reduce", "class"])
def test_a_published_file_with_a_pickled_class_is_refused_in_one_line_and_nothing_runs(tmp_path, payload):
    ckpt = published()
    ckpt["infos"]["extra"] = payload
    torch.save(ckpt, tmp_path / "pytorch_model.bin")
    RAN.clear()
    for load in (models.load, lambda p: pretrained.load_model(p, recipe_dir=tmp_path, device="cpu")):
        with pytest.raises(CheckpointError, match="holds pickled Python objects") as err:
            load(tmp_path)
        assert "\n" not in str(err.value) and "test_published" in str(err.value)
    assert RAN == []


def _saved(tmp_path: Path, ckpt: dict, name: str = "pytorch_model.bin") -> Path:
    torch.save(ckpt, tmp_path / name)
    return tmp_path / name


def test_wrong_weights_unknown_models_and_options_are_refused_in_one_line(tmp_path):
    cases = {}
    ckpt = published()
    ckpt["state_dict"]["masker.bottleneck.1.weight"] = torch.zeros(8, 15, 1)
    cases["shape"] = (
        ckpt,
        r"weights do not match its config \(shape mismatch: separator\.bottleneck\.weight: \(8, 15\)",
    )
    ckpt = published()
    del ckpt["state_dict"]["masker.net.1.inter_norm.gamma"]
    ckpt["state_dict"]["masker.extra"] = torch.zeros(1)
    cases["missing"] = (ckpt, r"missing: masker\.net\.1\.inter_norm\.gamma; unexpected: masker\.extra")
    ckpt = published()
    ckpt["state_dict"]["masker.net.0.intra_linear.weight"] = "not a tensor"
    cases["not a tensor"] = (ckpt, r"missing: masker\.net\.0\.intra_linear\.weight")
    cases["model"] = (
        {**published(), "model_name": "DPTNet\x1b[2J"},
        re.escape("an asteroid 'DPTNet?[2J' model; dnnsep"),
    )
    for key, value, what in [
        ("fb_name", "stft", "the free filterbank only"),
        ("mask_act", "softmax", "dnnsep converts sigmoid, relu"),  # asteroid's DPRNN softmax is across filters
        ("bidirectional", False, "bidirectional DPRNNs only"),
        ("norm_type", "cLN", "gLN DPRNNs only"),
        ("hop_size", 3, "must divide chunk_size"),
        ("dilation_rate", 2, r"option\(s\) dnnsep does not convert: \['dilation_rate'\]"),
    ]:
        ckpt = published()
        ckpt["model_args"][key] = value
        cases[key] = (ckpt, what)
    for case, (ckpt, message) in cases.items():
        with pytest.raises(CheckpointError, match=message) as err:
            models.load(_saved(tmp_path, ckpt))
        assert "\n" not in str(err.value) and "\x1b" not in str(err.value), case


@pytest.mark.parametrize(
    "change",
    [{"hid_size": 10**5}, {"n_filters": 10**6, "in_chan": 10**6, "out_chan": 10**6}, {"n_repeats": 10**8}],
    ids=["lstm-160GB", "filters", "blocks"],
)
def test_a_config_whose_sizes_would_take_gigabytes_is_refused_before_allocating(tmp_path, change):
    ckpt = published()
    ckpt["model_args"].update(change)
    path = _saved(tmp_path, ckpt)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="do not match its config"):
        models.load(path)
    assert time.perf_counter() - start < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # KiB: nothing big allocated


def test_a_converted_model_saved_by_dnnsep_round_trips_and_its_options_are_plain_values(tmp_path):
    model = models.load(PUBLISHED / "conv_tasnet_16k_relu_3src").eval()
    assert model.config.signal_padding == "none" and model.config.encoder_activation == "relu"
    assert len(model.separator.blocks) == 4 and model.separator.blocks[-1].residual_channels == 0
    buffer = io.BytesIO()
    torch.save(model.checkpoint(), buffer)
    buffer.seek(0)
    again = models.from_checkpoint_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(1, 999)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"time >= 8, got shape \(1, 7\)"):  # no padding: one window at least
        model(torch.randn(1, 7))
