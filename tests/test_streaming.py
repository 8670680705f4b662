"""dnnsep.streaming: block by block equals the offline causal model, at the model's latency, each chunk once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dnnsep import ConvTasNet, DnnsepError, DPRNNConfig, DPRNNTasNet, models
from dnnsep.models.base import MaskingModel
from dnnsep.models.dual_path import segment
from dnnsep.models.filterbanks import pad_signal
from dnnsep.streaming import StreamingSeparator, streaming_models

# Tiny causal configs per streamable model: odd strides, stride == kernel, hop == chunk, asteroid's head
# and chunk padding, SpeechBrain's chunk padding (DPRNN),
# depthwise kernels 1, 2, 3 and 4 (Conv-TasNet), 3 sources.
TINY = {
    "ConvTasNet": [
        dict(n_filters=16, kernel_size=4, bottleneck=8, hidden=12, skip_channels=6, n_layers=3, n_repeats=2),
        dict(n_filters=8, kernel_size=5, stride=2, bottleneck=6, hidden=7, skip_channels=5, conv_kernel=2,
             n_layers=4, n_repeats=1, mask="softmax", n_sources=3),
        dict(n_filters=8, kernel_size=6, stride=6, bottleneck=8, hidden=8, skip_channels=8, conv_kernel=4,
             n_layers=2, n_repeats=2, mask="relu", encoder_activation="linear"),
        dict(n_filters=8, kernel_size=4, bottleneck=4, hidden=6, skip_channels=4, conv_kernel=1, n_layers=1,
             n_repeats=2),
    ],
    "DPRNNTasNet": [
        dict(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=2),
        dict(n_filters=8, kernel_size=5, stride=2, hidden=7, chunk_size=6, hop_size=2, n_blocks=1, mask="softmax",
             n_sources=3),
        dict(n_filters=8, kernel_size=6, stride=6, hidden=8, chunk_size=4, hop_size=4, n_blocks=1, mask="relu"),
        dict(n_filters=8, kernel_size=4, hidden=8, chunk_size=6, hop_size=3, n_blocks=2, head="gated",
             chunk_padding="chunk"),
        dict(n_filters=8, kernel_size=4, hidden=8, chunk_size=6, hop_size=3, n_blocks=1, chunk_padding="speechbrain"),
    ],
}  # fmt: skip
STREAMABLE = streaming_models()
CASES = [(name, i) for name in STREAMABLE for i in range(len(TINY.get(name, [None])))]
TOL = 1e-4


def tiny(name: str, i: int, seed: int = 0) -> MaskingModel:
    if name not in TINY:
        pytest.fail(f"{name} streams: add a tiny causal config for it to TINY")
    cls = models.get(name)
    torch.manual_seed(seed)
    return cls(cls.config_class(causal=True, **TINY[name][i])).eval()


def random_blocks(n: int, rng: np.random.Generator) -> list[int]:
    """Block sizes summing to n: runs of 1-sample blocks, small ones, and a few large ones."""
    sizes = []
    while sum(sizes) < n:
        kind = rng.integers(3)
        if kind == 0:
            sizes += [1] * int(rng.integers(1, 40))
        else:
            sizes.append(int(rng.integers(2, 60 if kind == 1 else 2000)))
    while sum(sizes) - sizes[-1] >= n:  # a run of 1-sample blocks may overshoot by more than one block
        sizes.pop()
    sizes[-1] -= sum(sizes) - n
    assert sum(sizes) == n and min(sizes) > 0
    return sizes


def stream(model: MaskingModel, x: np.ndarray, sizes: list[int], *, after_push=None) -> np.ndarray:
    """Push x in blocks of ``sizes``, checking each output's length; returns all outputs concatenated."""
    s = StreamingSeparator(model)
    outs, start = [], 0
    for size in sizes:
        outs.append(s.push(x[start : start + size]))
        start += size
        assert outs[-1].shape == (model.n_sources, max(0, start - s.latency) - max(0, start - size - s.latency))
        assert outs[-1].dtype == np.float32
        if after_push is not None:
            after_push(s)
    outs.append(s.flush())
    return np.concatenate(outs, axis=1)


def offline(model: MaskingModel, x: np.ndarray) -> np.ndarray:
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768
    return model.separate(x)  # (n_sources, time)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name,i", CASES)
def test_streaming_equals_offline_for_random_block_sizes(name, i, seed):
    model = tiny(name, i, seed)
    rng = np.random.default_rng(seed)
    for n in (1, 3, model.config.kernel_size + 1, model.config.latency + 5, 4000 + seed):
        x = rng.standard_normal(n).astype(np.float32)
        out = stream(model, x, random_blocks(n, rng))
        assert out.shape == (model.n_sources, n)
        np.testing.assert_allclose(out, offline(model, x), rtol=0, atol=TOL, err_msg=f"length {n}")


@pytest.mark.parametrize("name,i", CASES)
def test_one_sample_blocks_and_int16_input(name, i):
    model = tiny(name, i)
    rng = np.random.default_rng(7)
    pcm = np.round(rng.standard_normal(1500) * 6000).astype(np.int16)
    np.testing.assert_allclose(stream(model, pcm, [1] * len(pcm)), offline(model, pcm), rtol=0, atol=TOL)
    np.testing.assert_allclose(stream(model, pcm, random_blocks(1500, rng)), offline(model, pcm), rtol=0, atol=TOL)


@pytest.mark.parametrize("name,i", CASES)
def test_one_block_then_flush_and_reset(name, i):
    model = tiny(name, i)
    x = np.random.default_rng(3).standard_normal(2345).astype(np.float32)
    s = StreamingSeparator(model)
    first = s.push(x)
    assert first.shape == (model.n_sources, len(x) - s.latency)
    out = np.concatenate([first, s.flush()], axis=1)
    np.testing.assert_allclose(out, offline(model, x), rtol=0, atol=TOL)
    s.reset()  # a second stream on the same object starts afresh
    y = x[::-1].copy()
    np.testing.assert_allclose(np.concatenate([s.push(y), s.flush()], 1), offline(model, y), rtol=0, atol=TOL)


def forget_dual_path_state(s: StreamingSeparator) -> None:
    """Test-only: drop what DualPathStream carries between pushes (cLN sums, inter-chunk LSTM state)."""
    m = s.masker
    m.in_norm.reset()
    for block in m.blocks:
        for part in block:  # intra-chunk cLN, inter-chunk cLN, inter-chunk LSTM
            part.reset()


def forget_tcn_state(s: StreamingSeparator) -> None:
    """Test-only: drop what TCNStream carries between pushes (cLN sums, the depthwise convs' past inputs)."""
    carry = s.masker.carry
    carry.norm.reset()
    for block in carry.blocks:
        for part in block:  # both cLNs, the depthwise conv's past inputs
            part.reset()


FORGET = {"DPRNNTasNet": forget_dual_path_state, "ConvTasNet": forget_tcn_state}


@pytest.mark.parametrize("name", STREAMABLE)
def test_resetting_the_carried_state_between_blocks_breaks_equality(name):
    model = tiny(name, 0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000).astype(np.float32)
    sizes = [160] * 25  # every push completes a chunk or two (DPRNN), 40 or 80 frames (Conv-TasNet)
    expected = offline(model, x)
    np.testing.assert_allclose(stream(model, x, sizes), expected, rtol=0, atol=TOL)  # the control
    forgetful = stream(model, x, sizes, after_push=FORGET[name])
    assert np.abs(forgetful - expected).max() > 100 * TOL


def test_forgetting_only_the_depthwise_inputs_or_only_the_norms_breaks_equality():
    """Each piece of TCNStream's state matters on its own (not only all of it together)."""
    model = tiny("ConvTasNet", 0)
    x = np.random.default_rng(1).standard_normal(4000).astype(np.float32)
    expected = offline(model, x)

    def forget_history(s):
        for block in s.masker.carry.blocks:
            block.past.reset()

    def forget_block_norms(s):
        for block in s.masker.carry.blocks:
            block.norm_in.reset()
            block.norm_out.reset()

    def forget_input_norm(s):
        s.masker.carry.norm.reset()

    for forget in (forget_history, forget_block_norms, forget_input_norm):
        out = stream(model, x, [160] * 25, after_push=forget)
        assert np.abs(out - expected).max() > 100 * TOL, forget.__name__


@pytest.mark.parametrize(
    "cls,config,why",
    [
        (DPRNNTasNet, dict(causal=False), "its inter-chunk LSTM is bidirectional and gLN looks at the whole input"),
        (DPRNNTasNet, dict(causal=False, norm="cln"), "its inter-chunk LSTM is bidirectional"),
        (ConvTasNet, dict(causal=False),
         "its depthwise convolutions are padded on both sides and gLN looks at the whole input"),
        (ConvTasNet, dict(causal=False, norm="cln"), "its depthwise convolutions are padded on both sides"),
        (ConvTasNet, dict(causal=False, norm="cln", conv_kernel=1), "its config says causal: false"),
    ],
)  # fmt: skip
def test_non_causal_model_is_refused_in_one_line(cls, config, why):
    model = cls(cls.config_class(**{**TINY[cls.model_name][0], **config}))
    with pytest.raises(DnnsepError) as err:
        StreamingSeparator(model)
    message = str(err.value)
    assert message == f"{cls.model_name}: not causal ({why}); train a causal model (conf/causal.yaml)"
    assert "\n" not in message


def test_a_model_that_does_not_stream_is_refused():
    class Fake(MaskingModel):
        model_name, config_name, config_class = "Fake", "fake", DPRNNConfig

        def make_separator(self, config):
            return nn.Identity()

    with pytest.raises(
        DnnsepError, match=r"^Fake: its masker does not stream \(models that stream: ConvTasNet, DPRNNTasNet\)$"
    ):
        StreamingSeparator(Fake(DPRNNConfig(causal=True, **TINY["DPRNNTasNet"][0])))


@pytest.mark.parametrize("name,i", CASES)
def test_latency_is_the_configs_and_the_model_looks_no_further(name, i):
    model = tiny(name, i)
    latency = StreamingSeparator(model).latency
    assert latency == model.config.latency
    # offline: changing the input from sample p on leaves the output before p - latency unchanged
    rng = np.random.default_rng(1)
    x = rng.standard_normal(3000).astype(np.float32)
    for p in (latency + 1, 1000, 2222):
        y = x.copy()
        y[p:] = rng.standard_normal(len(x) - p)
        np.testing.assert_allclose(offline(model, y)[:, : p - latency], offline(model, x)[:, : p - latency], atol=1e-6)


def offline_frames(model: MaskingModel, n: int) -> int:
    """Encoder frames the offline pass computes for n samples."""
    config = model.config
    padded, _ = pad_signal(torch.zeros(1, n), kernel_size=config.kernel_size, stride=config.stride)
    return (padded.shape[-1] - config.kernel_size) // config.stride + 1


def offline_work(model: MaskingModel, n: int) -> dict[str, int]:
    """The masker's work in the offline pass for n samples, in its stream's ``counts``."""
    frames = offline_frames(model, n)
    if isinstance(model, ConvTasNet):
        return {"frames": frames, "block_frames": frames * len(model.separator.blocks)}
    config = model.config
    chunking = dict(chunk_size=config.chunk_size, hop_size=config.hop_size, padding=config.chunk_padding)
    chunks = segment(torch.zeros(frames, 1, 1), **chunking).shape[1]
    return {"frames": frames, "chunks": chunks}


@pytest.mark.parametrize("name,i", CASES)
def test_compute_per_second_is_the_offline_passs(name, i):
    """Counted, not timed: every frame encoded, through the masker and decoded once, no chunk or block twice."""
    model = tiny(name, i)
    rng = np.random.default_rng(i)
    for n, sizes in [(8000, None), (2500, [1] * 2500), (16000, [320] * 50), (16001, [16001])]:
        s = StreamingSeparator(model)
        for size in sizes or random_blocks(n, rng):
            s.push(np.zeros(size, np.float32))
        s.flush()
        work, expected = s.work, offline_work(model, n)
        assert work["encoded_frames"] == work["decoded_frames"] == work["frames"] == expected["frames"]
        assert set(s.masker.counts) == set(expected)
        for key, count in expected.items():
            assert work[key] <= 1.2 * count, key
            assert work[key] == count, key  # in fact: none recomputed


def test_bad_blocks_and_calls():
    model = tiny("DPRNNTasNet", 0)
    s = StreamingSeparator(model)
    with pytest.raises(DnnsepError, match=r"mono samples \(samples,\), got shape \(10, 2\)"):
        s.push(np.zeros((10, 2), np.float32))
    assert s.flush().shape == (model.n_sources, 0)  # nothing pushed, nothing out
    with pytest.raises(DnnsepError, match="after flush"):
        s.push(np.zeros(10, np.float32))
