"""Chunked separation: exact overlap-add, agreement with one-pass separation, source-order
alignment across chunks, bounded memory, and the output scaling helpers."""

import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn

from dnnsep.inference import (
    ChunkedStream,
    best_permutation,
    chunk_starts,
    protect_from_clipping,
    rescale_to_mixture,
    scale_estimates,
    separate_long,
)

RATE = 8000


def si_sdr(est, ref):
    """Scale-invariant SDR in dB (independent of dnnsep.losses on purpose)."""
    est, ref = est - est.mean(), ref - ref.mean()
    target = (est @ ref) / (ref @ ref) * ref
    return 10 * np.log10((target @ target) / ((est - target) @ (est - target)))


def two_bands(seconds, seed=0):
    """Two known sources in separate bands (low: 150-400 Hz, high: 2-3.5 kHz), amplitude-modulated."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    low = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (150, 270, 400))
    high = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (2000, 2700, 3500))
    low *= 0.3 * (1.2 + np.sin(2 * np.pi * 0.7 * t))
    high *= 0.2 * (1.2 + np.cos(2 * np.pi * 0.45 * t))
    return low.astype(np.float32), high.astype(np.float32)


def band_split(x: torch.Tensor) -> torch.Tensor:
    """An exact "separator" for two_bands: FFT brick-wall filters at 1 kHz.  (batch, time) -> (batch, 2, time)."""
    spec = torch.fft.rfft(x.double())
    low = torch.fft.rfftfreq(x.shape[-1], 1 / RATE) < 1000
    parts = [torch.fft.irfft(spec * low, n=x.shape[-1]), torch.fft.irfft(spec * ~low, n=x.shape[-1])]
    return torch.stack(parts, dim=1).float()


class Flipper:
    """Wraps a separator and swaps its two outputs on every other chunk (counting chunks, not calls)."""

    def __init__(self, model):
        self.model, self.seen = model, 0

    def __call__(self, x):
        y = self.model(x)
        flip = (self.seen + torch.arange(x.shape[0])) % 2 == 1  # (batch,)
        self.seen += x.shape[0]
        return torch.where(flip[:, None, None], y.flip(1), y)


class Recorder:
    """Wraps a separator and records the largest input (in samples) it was ever given."""

    def __init__(self, model):
        self.model, self.largest, self.calls = model, 0, 0

    def __call__(self, x):
        self.largest, self.calls = max(self.largest, x.numel()), self.calls + 1
        return self.model(x)


def identity(x):
    return torch.stack([x, -0.5 * x], dim=1)


def conv_model(seed=0) -> nn.Module:
    """A random convolutional separator whose receptive field is 129 samples (16 ms at 8 kHz)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv1d(1, 8, 33, padding=16), nn.Tanh(),
        nn.Conv1d(8, 8, 33, padding=32, dilation=2), nn.Tanh(),
        nn.Conv1d(8, 2, 33, padding=16),
    ).eval()  # fmt: skip

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):  # (batch, time) -> (batch, 2, time)
            return self.net(x[:, None])

    return Model().eval()


# -- the chunk plan and exact overlap-add ----------------------------------------------------------


@pytest.mark.parametrize("chunk, overlap", [(100, 25), (100, 50), (64, 1), (7, 3)])
def test_chunk_plan_covers_everything_with_equal_chunks_and_enough_overlap(chunk, overlap):
    for length in [1, chunk - 1, chunk, chunk + 1, 2 * chunk, 5 * chunk + 3, 1000]:
        starts = chunk_starts(length, chunk=chunk, overlap=overlap)
        assert starts[0] == 0 and starts == sorted(set(starts))
        if length <= chunk:
            assert starts == [0]
            continue
        assert starts[-1] + chunk == length  # the last chunk ends at the end: all chunks full length
        gaps = np.diff(starts)
        assert (gaps <= chunk - overlap).all() and (gaps >= 1).all()  # neighbours overlap by >= `overlap`
        count = np.zeros(length, int)
        for s in starts:
            count[s : s + chunk] += 1
        assert count.min() >= 1  # every sample covered


@pytest.mark.parametrize("seconds", [0.4, 0.5, 0.51, 1.37, 2.0, 3.0001])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_cross_fades_sum_to_one(seconds, batch_size):
    """With an identity-like model the chunked output must equal the input exactly, for any length."""
    x = np.random.default_rng(0).standard_normal(int(seconds * RATE)).astype(np.float32)
    est = separate_long(identity, x, sample_rate=RATE, chunk_seconds=0.5, overlap=0.3, batch_size=batch_size)
    np.testing.assert_allclose(est, np.stack([x, -0.5 * x]), atol=1e-6)


def test_writes_into_a_given_array_such_as_a_memmap(tmp_path):
    x = np.random.default_rng(0).standard_normal(3 * RATE).astype(np.float32)
    out = np.lib.format.open_memmap(tmp_path / "est.npy", mode="w+", dtype=np.float32, shape=(2, len(x)))
    out[:] = 7.0  # stale content is cleared
    assert separate_long(identity, x, sample_rate=RATE, chunk_seconds=1.0, out=out) is out
    np.testing.assert_allclose(np.load(tmp_path / "est.npy"), np.stack([x, -0.5 * x]), atol=1e-6)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 24000\)"):
        separate_long(identity, x, sample_rate=RATE, chunk_seconds=1.0, out=np.zeros((3, len(x)), np.float32))


# -- agreement with one pass, and source order ---------------------------------------------------


def test_chunked_matches_one_pass_for_a_model_with_a_short_receptive_field():
    """What this checks: for a model (eval mode) whose output at a sample depends only on inputs
    within 64 samples of it, each chunk's output equals the one-pass output except near the chunk's
    edges, where the cross-fade gives that chunk almost no weight.  So chunked and one-pass results
    may differ only by those edge effects: SI-SDR between them above 30 dB.  Misplaced chunks, fades
    that do not sum to one, a lost last chunk or a wrong source order would all break it.  (A
    non-causal DPRNN has a global receptive field, through gLN and the inter-chunk RNN, so there
    the two results legitimately differ.)"""
    model = conv_model()
    low, high = two_bands(4.3)
    mixture = low + high
    with torch.inference_mode():
        whole = model(torch.from_numpy(mixture)[None])[0].numpy()  # (2, time)
    for chunk_seconds, overlap in [(0.5, 0.25), (1.0, 0.1), (0.3, 0.5)]:
        chunked = separate_long(model, mixture, sample_rate=RATE, chunk_seconds=chunk_seconds, overlap=overlap)
        for k in range(2):
            assert si_sdr(chunked[k], whole[k]) > 30


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_model_that_swaps_its_outputs_every_other_chunk_is_realigned(batch_size):
    low, high = two_bands(5.0)
    mixture = low + high
    est = separate_long(Flipper(band_split), mixture, sample_rate=RATE, chunk_seconds=0.5, batch_size=batch_size)
    assert si_sdr(est[0], low) > 25 and si_sdr(est[1], high) > 25
    # without the alignment each output holds pieces of both sources: the test can see the bug
    bad = separate_long(Flipper(band_split), mixture, sample_rate=RATE, chunk_seconds=0.5, align=False)
    assert si_sdr(bad[0], low) < 5 and si_sdr(bad[1], high) < 5


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_best_permutation_recovers_a_shuffle(n):
    rng = np.random.default_rng(n)
    ref = rng.standard_normal((n, 400))
    perm = rng.permutation(n)
    shuffled = 0.3 * ref[perm] + 0.05 * rng.standard_normal((n, 400))
    found = best_permutation(ref, shuffled)
    np.testing.assert_array_equal(shuffled[found], shuffled[np.argsort(perm)])


def test_short_inputs_are_separated_in_one_pass():
    model = Recorder(conv_model())
    x = np.random.default_rng(0).standard_normal(RATE).astype(np.float32)
    est = separate_long(model, x, sample_rate=RATE, chunk_seconds=1.0)
    assert model.calls == 1
    with torch.inference_mode():
        np.testing.assert_allclose(est, model.model(torch.from_numpy(x)[None])[0].numpy(), atol=1e-6)
    assert separate_long(model, x[:1], sample_rate=RATE).shape == (2, 1)
    assert separate_long(Recorder(identity), x, sample_rate=RATE, chunk_seconds=None).shape == (2, RATE)


def test_bad_arguments():
    x = np.zeros(RATE, np.float32)
    for kwargs, message in [
        (dict(overlap=0.0), "overlap"),
        (dict(overlap=0.6), "overlap"),
        (dict(batch_size=0), "batch_size"),
        (dict(chunk_seconds=0.0001), "too short"),
    ]:
        with pytest.raises(ValueError, match=message):
            separate_long(identity, x, sample_rate=RATE, **kwargs)
    with pytest.raises(ValueError, match=r"mixture must be \(time,\)"):
        separate_long(identity, np.zeros((2, 100)), sample_rate=RATE)
    with pytest.raises(ValueError, match="sample_rate is needed"):
        separate_long(identity, x)
    with pytest.raises(ValueError, match=r"must map \(batch, time\) to \(batch, n_sources, time\)"):
        separate_long(lambda t: t, x, sample_rate=RATE)


# -- memory ----------------------------------------------------------------------------------------


def test_working_memory_does_not_grow_with_length():
    """Two measurements, each independent of the model's internals: the model is never given more
    than batch_size x chunk samples (its memory is bounded by that), and the peak of everything
    separate_long allocates through numpy (traced by tracemalloc), beyond the output array itself,
    is the same for a 12 s and a 48 s input."""
    overheads = []
    for seconds in (12, 48):
        x = np.random.default_rng(0).standard_normal(seconds * RATE).astype(np.float32)
        model = Recorder(identity)
        tracemalloc.start()
        est = separate_long(model, x, sample_rate=RATE, chunk_seconds=1.0, batch_size=2)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert model.largest <= 2 * RATE
        overheads.append(peak - est.nbytes)
    assert overheads[1] <= 1.1 * overheads[0] + 4096
    assert overheads[1] < 40 * 2 * RATE * 4  # a few batches' worth, not the input's length


@pytest.mark.slow
def test_peak_rss_of_chunked_dprnn_does_not_grow_with_length():
    """End to end, in a fresh process: separating 16 s instead of 4 s with a small DPRNN in 1 s
    chunks raises the peak resident memory by about the larger output array only (2 x 12 s x 16 kHz
    x 4 bytes = 1.5 MB), under the 12 MB allowed; in one pass it grows by about 150 MB."""
    script = textwrap.dedent(
        """
        import resource
        import numpy as np, torch
        from dnnsep.models import DPRNNConfig, DPRNNTasNet
        from dnnsep.inference import separate_long
        torch.manual_seed(0)
        torch.set_num_threads(1)  # small ops on a busy machine: thread hand-offs would dominate
        model = DPRNNTasNet(DPRNNConfig(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5,
                                        n_blocks=1)).eval()
        x = (0.1 * np.random.default_rng(0).standard_normal(16 * 16000)).astype(np.float32)
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB (Linux: KiB)
        separate_long(model, x[: 4 * 16000], chunk_seconds=1.0)
        short = peak()
        separate_long(model, x, chunk_seconds=1.0)
        print(short, peak())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    short, long = map(float, out.split())
    assert long - short < 12, f"peak RSS grew by {long - short:.1f} MB from 4 s to 16 s"


# -- scaling the estimates -------------------------------------------------------------------------


def test_estimates_are_brought_to_their_level_in_the_mixture_and_kept_from_clipping():
    low, high = two_bands(1.0)
    mixture = low + high
    scaled = rescale_to_mixture(np.stack([40 * low, -0.01 * high]), mixture)
    np.testing.assert_allclose(scaled, np.stack([low, high]), atol=2e-3)
    loud = np.stack([3 * low, high])
    safe, gain = protect_from_clipping(loud, peak=0.9)
    assert np.abs(safe).max() == pytest.approx(0.9) and gain < 1
    np.testing.assert_allclose(safe / gain, loud, rtol=1e-5)  # one common gain: relative levels kept
    assert protect_from_clipping(0.5 * loud / np.abs(loud).max())[1] == 1.0
    out = scale_estimates(np.stack([low * 100, high * 100]), 4 * mixture)
    assert np.abs(out).max() <= 0.99 + 1e-6 and out.dtype == np.float32
    assert si_sdr(out[0], low) > 40


def random_splits(n: int, rng: np.random.Generator) -> list[int]:
    """Block sizes summing to n: single samples, small blocks and large ones."""
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.choice([1, rng.integers(2, 300), rng.integers(300, 5000)])))
    sizes[-1] -= sum(sizes) - n
    return [s for s in sizes if s > 0]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("make_model", [lambda: Flipper(band_split), conv_model], ids=["flipper", "conv"])
def test_chunked_stream_gives_separate_longs_output_for_any_blocks_at_its_latency(make_model, seed):
    rng = np.random.default_rng(seed)
    chunk, fade = 4000, 1000  # 0.5 s chunks at 8 kHz, overlap 0.25
    for n in (1, 700, chunk, chunk + 1, chunk + 3001, 42_123):
        x = (0.3 * rng.standard_normal(n)).astype(np.float32)
        whole = separate_long(make_model(), x, sample_rate=RATE, chunk_seconds=0.5, overlap=0.25)
        stream = ChunkedStream(make_model(), chunk=chunk, fade=fade)  # the Flipper counts chunks: a new one
        assert stream.latency == chunk
        outs, pushed = [], 0
        for size in random_splits(n, rng):
            outs.append(stream.push(x[pushed : pushed + size]))
            pushed += size
            assert sum(o.shape[1] for o in outs) == max(0, pushed - chunk)  # all but the last chunk's worth
        outs.append(stream.flush())
        outs = [o for o in outs if o.size]  # a plain function's sources are known from its first call on
        np.testing.assert_allclose(np.concatenate(outs, axis=1), whole, rtol=0, atol=1e-6, err_msg=f"length {n}")
    # int16 blocks are scaled as the live capture gives them; a second stream after reset() starts afresh
    pcm = (rng.standard_normal(9000) * 3000).astype(np.int16)
    stream = ChunkedStream(make_model(), chunk=chunk, fade=fade)
    stream.push(pcm[:100])
    stream.reset()
    got = np.concatenate([stream.push(pcm[:5000]), stream.push(pcm[5000:]), stream.flush()], axis=1)
    want = separate_long(make_model(), pcm.astype(np.float32) / 32768, sample_rate=RATE, chunk_seconds=0.5)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="after flush"):
        stream.push(pcm)


def test_chunked_stream_holds_about_a_chunk_whatever_the_length():
    stream = ChunkedStream(conv_model(), chunk=4000, fade=1000)
    x = np.zeros(400, np.float32)
    for _ in range(500):  # 25 s in 50-ms blocks
        stream.push(x)
        held = len(stream._x) + sum(r.shape[1] for r in stream._ready)
        assert held <= 2 * 4000 + 400


def weighted_sum_reference(model, x, *, chunk, fade, align=True):
    """separate_long as first written (dnnsep 0.x): every chunk's output times its weights, summed into the whole
    output (the chunk plan and the permutation search are the module's own, tested above)."""
    starts = chunk_starts(len(x), chunk=chunk, overlap=fade)
    width = min(chunk, len(x))
    est, prev_end, prev_tail = None, 0, None
    for i, s in enumerate(starts):
        with torch.inference_mode():
            y = model(torch.from_numpy(x[s : s + width])[None])[0].numpy()  # (n_sources, width)
        est = np.zeros((y.shape[0], len(x)), np.float32) if est is None else est
        if i > 0 and align:
            y = y[best_permutation(prev_tail, y[:, : prev_end - s])]
        w = np.ones(width, np.float32)
        ramp = (np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade) ** 2).astype(np.float32)
        if i > 0:
            a = prev_end - fade - s
            w[:a] = 0
            w[a : a + fade] = ramp
        if i < len(starts) - 1:
            w[width - fade :] *= ramp[::-1]
            prev_tail = y[:, starts[i + 1] - s :]
        est[:, s : s + width] += y * w
        prev_end = s + width
    return est


@pytest.mark.parametrize("batch_size", [1, 3])
def test_separate_long_equals_the_weighted_sum_of_its_chunks(batch_size):
    rng = np.random.default_rng(batch_size)
    for chunk_seconds, overlap in [(0.5, 0.25), (0.3001, 0.25), (0.2, 0.5), (0.25, 0.1)]:
        chunk = round(chunk_seconds * RATE)
        fade = round(overlap * chunk)
        for n in (chunk - 1, chunk, chunk + 1, chunk + fade, 3 * chunk + 7, 12_345):
            x = (0.3 * rng.standard_normal(n)).astype(np.float32)
            want = weighted_sum_reference(Flipper(band_split), x, chunk=chunk, fade=fade)
            got = separate_long(Flipper(band_split), x, sample_rate=RATE, chunk_seconds=chunk_seconds, overlap=overlap,
                                batch_size=batch_size)  # fmt: skip
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"{chunk_seconds} s, length {n}")


def test_one_pass_takes_any_length_and_overlap():
    model = conv_model()
    for n in (1, 2, 3, 7, 4001):
        x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        with torch.inference_mode():
            want = model(torch.from_numpy(x)[None])[0].numpy()
        for overlap in (0.25, 0.5):
            got = separate_long(model, x, sample_rate=RATE, chunk_seconds=None, overlap=overlap)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # a chunk of 4n + 3 samples with overlap 0.5 cross-fades over half a chunk, rounded down, and still sums to one
    x = np.random.default_rng(0).standard_normal(20_000).astype(np.float32)
    est = separate_long(identity, x, sample_rate=RATE, chunk_seconds=2003 / RATE, overlap=0.5)
    np.testing.assert_allclose(est[0], x, rtol=0, atol=1e-5)
