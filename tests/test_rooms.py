"""Rooms: RT60 of simulated responses (Schroeder, computed here), the direct-path target, FFT
convolution, measured responses, and one-line errors for bad room options."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from dnnsep.bin import prepare
from dnnsep.data import rooms
from dnnsep.data.lists import Rng
from dnnsep.errors import DnnsepError

SR = 8000  # short responses: the tests stay fast


def schroeder_t30(h: np.ndarray, sample_rate: int) -> float:
    """RT60 from the -5..-35 dB slope of Schroeder's backward-integrated energy, extrapolated to 60 dB."""
    energy = np.cumsum(h[::-1].astype(np.float64) ** 2)[::-1]
    db = 10 * np.log10(energy / energy[0] + 1e-30)
    a, b = int(np.argmax(db <= -5)), int(np.argmax(db <= -35))
    slope, _ = np.polyfit(np.arange(a, b) / sample_rate, db[a:b], 1)
    return -60.0 / slope


@pytest.mark.parametrize(
    "size, rt60", [([4.0, 3.0, 2.5], 0.2), ([5.0, 4.0, 2.7], 0.45), ([6.0, 5.0, 3.0], 0.8), ([4.5, 3.5, 2.6], 0.3)]
)
def test_simulated_response_has_the_requested_rt60_within_20_percent(size, rt60):
    room = {"size": size, "rt60": rt60, "mic": [1.1, 1.2, 1.3], "sources": [[2.9, 1.9, 1.5], [1.0, 2.4, 1.2]],
            "seed": 3}  # fmt: skip
    for h in rooms.simulate(room, SR):
        assert schroeder_t30(h, SR) == pytest.approx(rt60, rel=0.2)
        assert 0.9 * rt60 * SR < len(h) < 1.2 * rt60 * SR + 0.1 * SR


def test_drawn_rooms_hold_their_sources_and_are_feasible():
    opts = rooms.RoomOptions()
    for i in range(50):
        room = rooms.draw_room(Rng(i), 3, opts)
        assert opts.rt60[0] <= room["rt60"] <= opts.rt60[1]
        assert rooms.sabine_absorption(room["size"], room["rt60"]) < 1
        for p in [room["mic"], *room["sources"]]:
            assert all(0.5 <= x <= s - 0.5 for x, s in zip(p, room["size"]))
        assert all(np.linalg.norm(np.subtract(s, room["mic"])) >= 0.5 for s in room["sources"])
    assert rooms.draw_room(Rng(7), 2, opts) == rooms.draw_room(Rng(7), 2, opts)


def test_direct_target_is_the_direct_peak_and_early_reflections_up_to_50_ms():
    h = np.zeros(SR, dtype=np.float32)
    peak = 200
    h[peak - 3 : peak + 4] = [0.1, 0.3, 0.7, 1.0, 0.7, 0.3, 0.1]  # a fractional-delay direct path
    h[peak + int(0.030 * SR)] = 0.5  # an early reflection (30 ms)
    h[peak + int(0.049 * SR)] = 0.4  # still early (49 ms)
    h[peak + int(0.060 * SR)] = 0.3  # late (60 ms)
    h[peak + int(0.3 * SR)] = 0.2
    early = rooms.early_part(h, SR)
    kept = np.flatnonzero(early)
    assert list(kept) == [*range(peak - 3, peak + 4), peak + int(0.030 * SR), peak + int(0.049 * SR)]
    assert np.array_equal(early[kept], h[kept])
    x = np.random.default_rng(0).standard_normal((2, 2000)).astype(np.float32)
    wet, target = rooms.reverberate(x, [h, h], target="direct", sample_rate=SR)
    scale = np.sqrt(np.mean(x[0] ** 2) / np.mean(np.convolve(x[0], h)[:2000] ** 2))
    np.testing.assert_allclose(target[0], np.convolve(x[0], early)[:2000] * scale, atol=1e-4)
    np.testing.assert_allclose(wet[0], np.convolve(x[0], h)[:2000] * scale, atol=1e-4)
    wet2, same = rooms.reverberate(x, [h, h], target="reverberant", sample_rate=SR)
    assert np.array_equal(wet2, same)


def test_simulated_direct_target_holds_the_direct_path():
    room = {"size": [4.0, 3.0, 2.5], "rt60": 0.4, "mic": [1.0, 1.0, 1.2], "sources": [[3.0, 2.0, 1.4]], "seed": 1}
    (h,) = rooms.simulate(room, SR)
    distance = np.linalg.norm(np.subtract(room["sources"][0], room["mic"]))
    delay = 40  # pyroomacoustics' fractional-delay filters (81 taps) delay every path by 40 samples
    direct = distance / rooms.SOUND_SPEED * SR + delay
    early = rooms.early_part(h, SR)
    kept = np.flatnonzero(early)
    assert abs(kept[0] + 0.0025 * SR - direct) <= 2 and abs(kept[-1] - 0.05 * SR - direct) <= 2
    assert np.sum(early**2) < 0.9 * np.sum(h**2)  # the tail is gone


def test_fft_convolution_matches_numpy():
    rng = np.random.default_rng(1)
    x, h = rng.standard_normal(1000), rng.standard_normal(300)
    np.testing.assert_allclose(rooms.convolve(x, h), np.convolve(x, h)[:1000], atol=1e-4)
    np.testing.assert_allclose(rooms.convolve(x, h, 1299), np.convolve(x, h), atol=1e-4)


def test_reverberated_sources_are_the_convolution_at_the_dry_level():
    h = rooms.simulate(rooms.draw_room(Rng("conv"), 2, rooms.RoomOptions(rt60=(0.3, 0.3))), SR)
    x = np.random.default_rng(2).standard_normal((2, SR)).astype(np.float32)
    wet, target = rooms.reverberate(x, h, target="reverberant", sample_rate=SR)
    for k in range(2):
        want = np.convolve(x[k].astype(np.float64), h[k].astype(np.float64))[:SR]
        want *= np.sqrt(np.mean(x[k].astype(np.float64) ** 2) / np.mean(want**2))
        np.testing.assert_allclose(wet[k], want, atol=1e-5 * np.abs(want).max())
    assert wet.dtype == np.float32 and np.array_equal(wet, target)


def test_responses_keep_pyroomacoustics_high_pass_filter_and_its_switch():
    import pyroomacoustics as pra

    room = rooms.draw_room(Rng("hpf"), 2, rooms.RoomOptions())

    def shoebox():
        sim = pra.ShoeBox(room["size"], fs=SR, materials=pra.Material(0.4), max_order=3, air_absorption=False)
        for s in room["sources"]:
            sim.add_source(s)
        sim.add_microphone(room["mic"])
        return sim

    theirs = shoebox()
    theirs.compute_rir()  # filtered as pyroomacoustics does it, the filter designed in the call
    for _ in range(2):  # the second from the cached design
        ours = rooms._compute_rir(pra, shoebox(), SR)
        assert all(np.array_equal(a, b) for a, b in zip(theirs.rir[0], ours)) and len(ours) == 2
    broken = shoebox()
    broken.compute_rir = lambda: 1 / 0
    with pytest.raises(ZeroDivisionError):
        rooms._compute_rir(pra, broken, SR)
    assert pra.constants.get("rir_hpf_enable") is True  # switched back on


def test_measured_responses_from_a_folder(tmp_path):
    h = np.zeros(4000, dtype=np.float32)
    h[10], h[400] = 1.0, 0.5
    h[800:] = 0.2 * np.exp(-np.arange(3200) / 400) * np.random.default_rng(0).standard_normal(3200)
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "r1.wav", h, SR)
    sf.write(tmp_path / "r2.wav", np.stack([h, h], 1), SR)
    files = rooms.rir_files(tmp_path, SR)
    assert files == ["a/r1.wav", "r2.wav"]
    room = rooms.draw_measured(Rng(0), 2, files)
    assert sorted(room["rirs"]) == files
    np.testing.assert_allclose(rooms.read_rir(tmp_path, "r2.wav", SR), h, atol=1e-4)
    with pytest.raises(DnnsepError, match=r"rir_root .*: holds no \.wav"):
        rooms.rir_files(_empty(tmp_path), SR)
    with pytest.raises(DnnsepError, match="rir_root: .* 16000 Hz"):
        rooms.read_rir(tmp_path, "r2.wav", 16000)


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rt60=(-0.1, 0.5)), "rt60 must be a range 0 < min"),
        (dict(rt60=(0.8, 0.2)), "rt60 must be a range"),
        (dict(length=(0.8, 1.0), width=(0.8, 1.0), height=(0.8, 1.0)), "min_distance"),
    ],
)
def test_bad_room_options_are_one_line_errors_naming_the_option(kwargs, match):
    with pytest.raises(DnnsepError, match=match) as err:
        rooms.RoomOptions(**kwargs)
    assert "\n" not in str(err.value)


def test_prepare_refuses_bad_room_options_in_one_line(tmp_path, capsys):
    for args, match in ((["--reverb", "rooms", "--rt60", "-0.1", "0.5"], "--rt60 -0.1 0.5"),
                        (["--reverb", "measured"], "--rir_root")):  # fmt: skip
        with pytest.raises(DnnsepError, match=match) as err:
            prepare.main([str(tmp_path / "d"), "2", *args])
        assert "\n" not in str(err.value)


def test_missing_pyroomacoustics_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyroomacoustics", None)  # import fails
    room = {"size": [4.0, 3.0, 2.5], "rt60": 0.3, "mic": [1, 1, 1], "sources": [[3, 2, 1]], "seed": 0}
    with pytest.raises(DnnsepError, match=r"pip install 'dnnsep\[rooms\]'"):
        rooms.simulate(room, SR)
