"""SepFormers SpeechBrain published, loaded as dnnsep's SepFormer: SpeechBrain's own output, and nothing runs.

The fixtures under tests/data/published/sepformer_* were made once with SpeechBrain 1.1 by
make_speechbrain_fixtures.py there (``--check`` reruns SpeechBrain against them); these tests need
no SpeechBrain.
"""

from __future__ import annotations

import resource
import shutil
from pathlib import Path

import pytest
import torch

from dnnsep import models, pretrained
from dnnsep.errors import CheckpointError
from dnnsep.models import speechbrain_format
from dnnsep.models.dual_path import segment

PUBLISHED = Path(__file__).parent / "data" / "published"
FIXTURES = sorted(p.name for p in PUBLISHED.iterdir() if (p / "hyperparams.yaml").is_file())
TOLERANCE = 1e-5  # max |dnnsep - SpeechBrain| / RMS(SpeechBrain), float32


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.pow(2).mean().sqrt())


def copy(tmp_path: Path, name: str = "sepformer_8k_2src") -> Path:
    folder = tmp_path / name
    shutil.copytree(PUBLISHED / name, folder)
    return folder


def test_the_fixtures_cover_two_and_three_speakers_both_rates_and_speechbrains_padding():
    loaded = [models.load(PUBLISHED / name) for name in FIXTURES]
    assert {m.n_sources for m in loaded} == {2, 3} and {m.sample_rate for m in loaded} == {8000, 16000}
    for name, model in zip(FIXTURES, loaded):
        config = model.config
        x = torch.load(PUBLISHED / name / "reference.pt", weights_only=True)["input"]
        frames = (x.shape[-1] - config.kernel_size) // config.stride + 1
        chunks = {
            padding: segment(torch.zeros(frames, 1, 1), chunk_size=config.chunk_size, hop_size=config.hop_size,
                             padding=padding).shape[1]
            for padding in ("overlap", "speechbrain")
        }  # fmt: skip
        assert chunks["speechbrain"] != chunks["overlap"], name  # the padding is tested where it differs
        assert (x.shape[-1] - config.kernel_size) % config.stride, name  # and SpeechBrain's zero tail


@pytest.mark.parametrize("name", FIXTURES)
def test_a_converted_sepformer_gives_speechbrains_separate_batch(name):
    model = models.load(PUBLISHED / name).eval()
    ref = torch.load(PUBLISHED / name / "reference.pt", weights_only=True)
    assert type(model) is models.SepFormer
    assert model.provenance == {"format": "speechbrain", "model": "SepFormer", "licence": "apache-2.0"}
    with torch.no_grad():
        ours = model(ref["input"]).transpose(1, 2)  # SpeechBrain's (batch, time, n_src)
        assert relative_error(ours, ref["output"]) < TOLERANCE
        assert relative_error(model.double()(ref["input"].double()).transpose(1, 2), ref["output_float64"]) < 1e-10


def test_folder_yaml_path_and_the_tools_load_it_and_say_what_it_is(tmp_path, capsys):
    folder = PUBLISHED / "sepformer_16k_3src"
    ref = torch.load(folder / "reference.pt", weights_only=True)
    for given in (folder, folder / "hyperparams.yaml", str(folder)):
        net, path = pretrained.load_model(given, recipe_dir=tmp_path, device="cpu")
        assert path == folder
        with torch.no_grad():
            assert relative_error(net(ref["input"]).transpose(1, 2), ref["output"]) < TOLERANCE
    said = capsys.readouterr().err.splitlines()[-1]
    assert (
        said == f"model: {folder} (speechbrain SepFormer as dnnsep's SepFormer, 16 kHz, 3 sources; licence: apache-2.0)"
    )
    # saved by dnnsep, it is a dnnsep checkpoint computing the same
    models.load(folder).save(tmp_path / "best.pth")
    again = models.load(tmp_path / "best.pth").eval()
    assert again.config.chunk_padding == "speechbrain" and again.provenance == {"format": "dnnsep"}
    with torch.no_grad():
        assert relative_error(again(ref["input"]).transpose(1, 2), ref["output"]) < TOLERANCE


def test_python_tags_in_hyperparams_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    folder = copy(tmp_path)
    text = (folder / "hyperparams.yaml").read_text()
    (folder / "hyperparams.yaml").write_text(text + f'\nowned: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(CheckpointError, match="holds Python tags .* refused") as err:
        models.load(folder)
    assert "\n" not in str(err.value) and not marker.exists()
    # HyperPyYAML's own tags are data here: a !new: naming any callable builds nothing
    encoder = "!new:speechbrain.lobes.models.dual_path.Encoder\n    kernel_size: !ref <kernel_size>\n"
    assert encoder in text
    (folder / "hyperparams.yaml").write_text(text.replace(encoder, f'!apply:os.system ["touch {marker}"]\nunused:\n'))
    with pytest.raises(CheckpointError, match="has no encoder"):
        models.load(folder)
    (folder / "hyperparams.yaml").write_text(
        text.replace("!new:speechbrain.lobes.models.dual_path.Encoder", "!new:os.system")
    )
    with pytest.raises(CheckpointError, match="its encoder is os.system; dnnsep reads SpeechBrain's SepFormer"):
        models.load(folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("norm_before: True", "norm_before: False", "norm_before is off"),
        ("norm: ln", "norm: cln", "masknet norm is 'cln', not 'ln'"),
        ("linear_layer_after_inter_intra: False", "linear_layer_after_inter_intra: True", "linear layers after"),
        ("dual_path.SBTransformerBlock", "dual_path.SBRNNBlock", "its intra_model is speechbrain.*SBRNNBlock"),
        ("K: 10", "K: 9", "K=9 is not even"),
        ("sample_rate: 8000\n", "", "no sample_rate"),
        ("kernel_stride: 4", "kernel_stride: 3", "the decoder's stride is not L // 2"),
        ("out_channels: !ref <N_encoder_out>", "out_channels: !ref <N_encoder_out> * 2", "is an expression"),
        ("in_channels: !ref <N_encoder_out>", "in_channels: !ref <nothing>", "names nothing"),
        ("nhead: 2", "nhead: 3", "invalid SepFormer: invalid heads=3: must divide the bottleneck"),
    ],
)
def test_a_model_dnnsep_cannot_compute_alike_is_refused_in_one_line(tmp_path, old, new, message):
    folder = copy(tmp_path)
    text = (folder / "hyperparams.yaml").read_text()
    assert old in text
    (folder / "hyperparams.yaml").write_text(text.replace(old, new))
    with pytest.raises(CheckpointError, match=message) as err:
        models.load(folder)
    assert "\n" not in str(err.value) and str(folder) in str(err.value)


def test_wrong_missing_and_pickled_weights_are_refused_in_one_line(tmp_path):
    folder = copy(tmp_path)
    state = torch.load(folder / "masknet.ckpt", weights_only=True)
    torch.save({**state, "conv2d.weight": torch.zeros(3, 4, 1, 1)}, folder / "masknet.ckpt")
    with pytest.raises(CheckpointError, match=r"shape mismatch: separator\.mask_conv\.weight: \(3, 4\)"):
        models.load(folder)
    del state["dual_mdl.1.inter_norm.bias"]
    torch.save({**state, "extra": torch.zeros(1)}, folder / "masknet.ckpt")
    with pytest.raises(CheckpointError, match=r"masknet.ckpt: SpeechBrain weights do not match its hyperparams.yaml "
                       r"\(missing: dual_mdl\.1\.inter_norm\.bias; unexpected: extra\)"):  # fmt: skip
        models.load(folder)
    torch.save({"weight": torch.zeros(1), "why": Path("x")}, folder / "decoder.ckpt")
    with pytest.raises(
        CheckpointError, match="decoder.ckpt: not a readable dnnsep checkpoint: it holds pickled Python"
    ):
        models.load(folder)
    (folder / "encoder.ckpt").unlink()
    with pytest.raises(CheckpointError, match="a SpeechBrain separator's folder lacks encoder.ckpt"):
        models.load(folder)


@pytest.mark.parametrize(
    "old, new",
    [("N_encoder_out: 16", "N_encoder_out: 1000000"), ("num_layers: 2\n    K", "num_layers: 100000000\n    K")],
    ids=["filters", "blocks"],
)
def test_sizes_that_would_take_gigabytes_are_refused_before_allocating(tmp_path, old, new):
    folder = copy(tmp_path)
    text = (folder / "hyperparams.yaml").read_text()
    assert old in text
    (folder / "hyperparams.yaml").write_text(text.replace(old, new))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="do not match"):
        models.load(folder)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # KiB: nothing big allocated


def test_read_hyperparams_reads_tags_as_data_and_resolves_plain_references():
    text = "a: 3\nb: !ref <a>\nc: !new:x.Y\n  k: !ref <b>\nd: !name:z.W\ne: [!ref <c>]\n"
    got = speechbrain_format.read_hyperparams(text)
    assert got["b"] == 3 and got["c"] == speechbrain_format.Tagged("new", "x.Y", {"k": 3})
    assert got["d"] == speechbrain_format.Tagged("name", "z.W", "") and got["e"] == [got["c"]]
    with pytest.raises(CheckpointError, match="go in a circle"):
        speechbrain_format.read_hyperparams("a: !ref <b>\nb: !ref <a>\n")
    with pytest.raises(CheckpointError, match="is not a mapping"):
        speechbrain_format.read_hyperparams("- 1\n")


@pytest.mark.slow
def test_test_sh_scores_a_published_model_on_a_list_at_its_rate_and_refuses_another_rate(tmp_path):
    import subprocess
    import sys

    def run(*argv: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*argv], capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert (done.returncode == 0) == ok, done.stderr[-3000:]
        return done

    run(sys.executable, "-m", "dnnsep.bin.make_corpus", str(tmp_path / "corpus"), "--engine", "numpy",
        "--n_speakers", "4", "--utts_per_speaker", "2", "--seconds", "1.5", "2", "--quiet")  # fmt: skip
    for n in ("2", "3"):
        run(sys.executable, "-m", "dnnsep.bin.prepare", str(tmp_path / "data"), n, "--librispeech_root",
            str(tmp_path / "corpus"), "--segment", "1", "--eval_segment", "1", "--n_train", "3", "--n_valid", "2",
            "--n_test", "3", "--no_progress")  # fmt: skip
    test_sh = Path(__file__).resolve().parents[1] / "egs" / "librispeech" / "sepformer" / "test.sh"
    done = run("bash", str(test_sh), "--model", str(PUBLISHED / "sepformer_16k_3src"), "--dataset_dir",
               str(tmp_path / "data"))  # fmt: skip
    assert "test: 3 mixtures  SI-SDR" in done.stdout and "licence: apache-2.0" in done.stderr
    summary = test_sh.parent / "results" / "eval" / "test-sepformer_16k_3src" / "summary.json"
    try:
        assert summary.is_file()  # beside the recipe, not inside the published model's folder
        assert not (PUBLISHED / "sepformer_16k_3src" / "eval").exists()
    finally:
        shutil.rmtree(test_sh.parent / "results", ignore_errors=True)
    done = run("bash", str(test_sh), "--model", str(PUBLISHED / "sepformer_8k_2src"), "--dataset_dir",
               str(tmp_path / "data"), "--out_dir", str(tmp_path / "eval8k"), ok=False)  # fmt: skip
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line.endswith(f"test.json: 16000 Hz, but {PUBLISHED / 'sepformer_8k_2src'} separates 8000 Hz audio")
