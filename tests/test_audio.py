"""Audio I/O and resampling: formats, downmixing, errors, bit-exact 16-bit round trips, and the
resampler checked against analytic sines (accuracy, frequency, aliasing and imaging)."""

import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from dnnsep.audio import DownmixWarning, StreamResampler, read_audio, resample, write_wav, write_wavs
from dnnsep.errors import AudioError


def sine(freq, rate, seconds, amp=0.5, phase=0.0):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def peak_freq(x, rate):
    """Frequency of the largest bin of a Hann-windowed spectrum, refined by parabolic interpolation."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / len(x)


def db(x):
    return 20 * math.log10(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-20)


# -- reading -------------------------------------------------------------------------------------


def test_16_bit_wav_reads_exactly_and_writes_back_bit_exactly(tmp_path):
    pcm = np.random.default_rng(0).integers(-32768, 32768, size=8000, dtype=np.int16)
    pcm[:3] = [-32768, 32767, 0]
    sf.write(tmp_path / "a.wav", pcm, 16000, subtype="PCM_16")
    audio, rate = read_audio(tmp_path / "a.wav")
    assert rate == 16000 and audio.dtype == np.float32 and audio.shape == (8000,)
    np.testing.assert_array_equal(audio, pcm / 32768.0)
    write_wav(tmp_path / "b.wav", audio, rate)
    back, info = sf.read(tmp_path / "b.wav", dtype="int16"), sf.info(tmp_path / "b.wav")
    np.testing.assert_array_equal(back[0], pcm)
    assert info.subtype == "PCM_16" and info.samplerate == 16000


@pytest.mark.parametrize(
    "subtype, fmt, suffix, tol",
    [("PCM_24", "WAV", "wav", 2**-23), ("FLOAT", "WAV", "wav", 0), ("PCM_16", "FLAC", "flac", 2**-15)],
)
def test_24_bit_float_and_flac(tmp_path, subtype, fmt, suffix, tol):
    x = sine(440, 22050, 0.5, amp=0.7)
    path = tmp_path / f"x.{suffix}"
    sf.write(path, x, 22050, subtype=subtype, format=fmt)
    audio, rate = read_audio(path)
    assert rate == 22050
    assert np.abs(audio - x).max() <= tol


def test_stereo_is_downmixed_with_a_warning_naming_the_file(tmp_path):
    left, right = sine(300, 16000, 0.5), sine(500, 16000, 0.5, amp=0.2)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    with pytest.warns(DownmixWarning, match=r"st\.wav: 2 channels downmixed"):
        audio, _ = read_audio(tmp_path / "st.wav")
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mono=False: no downmix, no warning
        both, _ = read_audio(tmp_path / "st.wav", mono=False)
    assert both.shape == (2, 8000)


def test_read_resamples_on_request(tmp_path):
    sf.write(tmp_path / "a.wav", sine(1000, 44100, 1.0), 44100)
    audio, rate = read_audio(tmp_path / "a.wav", sample_rate=16000)
    assert rate == 16000 and audio.shape == (16000,)
    assert abs(peak_freq(audio, 16000) - 1000) < 1


def _corrupt(path):
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
        (lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "no audio samples"),
        (_corrupt, "not a readable audio file"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "not a readable audio file"),
        (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, "FLOAT"), "NaN or infinite"),
    ],
    ids=["missing", "directory", "zero-bytes", "no-frames", "corrupt-header", "random-bytes", "nan"],
)
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as err:
        read_audio(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_too_short(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(100, np.float32), 16000)
    assert read_audio(tmp_path / "s.wav")[0].shape == (100,)
    with pytest.raises(AudioError, match=r"s\.wav: too short \(0\.006 s; at least 0\.1 s needed\)"):
        read_audio(tmp_path / "s.wav", min_seconds=0.1)


# -- writing -------------------------------------------------------------------------------------


def test_write_clips_and_takes_channels_first(tmp_path):
    write_wav(tmp_path / "c.wav", np.array([[2.0, -2.0, 0.5], [0.0, 0.25, -1.0]]), 8000)
    back, rate = sf.read(tmp_path / "c.wav", dtype="int16")
    assert rate == 8000
    np.testing.assert_array_equal(back, [[32767, 0], [-32768, 8192], [16384, -32768]])
    write_wav(tmp_path / "t.wav", torch.zeros(10), 8000)  # tensors too
    assert sf.info(tmp_path / "t.wav").frames == 10


def test_writes_are_all_or_nothing(tmp_path):
    write_wav(tmp_path / "keep.wav", np.full(10, 0.5), 8000)
    with pytest.raises(AudioError, match="NaN"):
        write_wavs({tmp_path / "new.wav": np.zeros(10), tmp_path / "keep.wav": np.full(10, np.nan)}, 8000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.wav"]  # no new file, no temporary left
    assert read_audio(tmp_path / "keep.wav")[0][0] == 0.5
    with pytest.raises(ValueError, match="channels, time"):
        write_wav(tmp_path / "x.wav", np.zeros((1000, 2)), 8000)  # (time, channels) by mistake


# -- resampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "orig, new, freq",
    [(44100, 16000, 1000), (8000, 16000, 1500), (48000, 16000, 3000), (16000, 44100, 5000), (22050, 16000, 6000),
     (16001, 16000, 2345), (11127, 16000, 700)],
)  # fmt: skip
def test_resampled_sine_matches_the_analytic_sine(orig, new, freq):
    x = sine(freq, orig, 1.0, phase=0.3)
    y = resample(x, orig, new)
    assert y.shape == (math.ceil(len(x) * new / orig),) and y.dtype == np.float32
    expected = sine(freq, new, len(y) / new, phase=0.3)
    inner = slice(new // 100, -new // 100)  # away from the edges, where the input is taken as zero
    assert np.abs(y - expected)[inner].max() < 1e-3  # below -60 dB of the tone
    assert abs(peak_freq(y[inner], new) - freq) < 0.5


def test_downsampling_removes_what_would_alias():
    tone = sine(10000, 44100, 1.0)  # above 16 kHz's Nyquist frequency: would fold to 6 kHz
    y = resample(tone, 44100, 16000)
    assert db(y[200:-200]) - db(tone) < -80
    # a tone inside the pass band keeps its level (within 0.1 dB)
    assert abs(db(resample(sine(6000, 44100, 1.0), 44100, 16000)[200:-200]) - db(sine(6000, 44100, 1.0))) < 0.1


def test_upsampling_leaves_no_images():
    y = resample(sine(3000, 8000, 1.0), 8000, 16000)  # images would appear at 5 kHz
    spec = np.abs(np.fft.rfft(y[400:-400] * np.hanning(len(y) - 800)))
    freqs = np.fft.rfftfreq(len(y) - 800, 1 / 16000)
    assert 20 * np.log10(spec[freqs > 4000].max() / spec.max()) < -80


def test_resample_keeps_kind_shape_and_dc():
    x = torch.ones(2, 3, 4410)
    y = resample(x, 44100, 16000)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 3, 1600)
    np.testing.assert_allclose(y[..., 200:-200].numpy(), 1.0, atol=1e-4)  # unit DC gain
    same = np.arange(5, dtype=np.float32)
    out = resample(same, 16000, 16000)
    np.testing.assert_array_equal(out, same)
    assert out is not same
    assert resample(np.zeros(0, np.float32), 44100, 16000).shape == (0,)
    with pytest.raises(ValueError, match="positive integers"):
        resample(same, 0, 16000)


def test_polyphase_and_per_output_paths_agree(monkeypatch):
    """The table-free path (used for awkward ratios such as 16001 -> 16000) is the same filter."""
    import dnnsep.audio as audio

    x = np.random.default_rng(1).standard_normal(22050).astype(np.float32)
    table = resample(x, 22050, 16000)
    monkeypatch.setattr(audio, "_MAX_PHASE_WEIGHTS", 0)
    direct = resample(x, 22050, 16000)
    np.testing.assert_allclose(direct, table, atol=1e-5)


@pytest.mark.parametrize("orig, new", [(48000, 16000), (44100, 16000), (16000, 48000), (8000, 16000), (16000, 16000),
                                       (22050, 16000)])  # fmt: skip
def test_a_stream_resampled_block_by_block_equals_the_whole_stream_resampled(orig, new):
    rng = np.random.default_rng(orig + new)
    x = rng.standard_normal(orig // 4).astype(np.float32)  # a quarter of a second
    want = resample(x, orig, new)
    for sizes in ([1, 7, 333, 5000], [orig // 100], [len(x)]):  # odd blocks, 10 ms blocks, all at once
        stream, pieces, i, k = StreamResampler(orig, new), [], 0, 0
        while i < len(x):
            n = sizes[k % len(sizes)]
            pieces.append(stream.push(x[i : i + n]))
            i, k = i + n, k + 1
            assert len(stream.buffer) <= n + 2 * stream.delay + orig  # bounded: what the next outputs need
        pieces.append(stream.flush())
        got = np.concatenate(pieces)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2e-6, err_msg=f"{orig}->{new} in blocks {sizes}")
    assert stream.sent == 0 and stream.flush().shape == (0,)  # flush starts a new stream
