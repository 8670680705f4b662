"""MixtureDataset: shapes, levels, frame-exact reads, sample-rate checks, on-the-fly mixing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from corpus import SEGMENT, tiny_corpus

from dnnsep.bin import prepare
from dnnsep.data import MixtureDataset, list_path
from dnnsep.data import dataset as dataset_module
from dnnsep.errors import AudioError, DnnsepError


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory):
    return tiny_corpus(tmp_path_factory)


@pytest.fixture(scope="module")
def dataset_dir(corpus_root, tmp_path_factory):
    """2-speaker lists: 1-s train mixtures, full-length valid/test ones."""
    out = tmp_path_factory.mktemp("ds")
    argv = [str(out), "2", "--librispeech_root", str(corpus_root), "--no_progress", *SEGMENT, "--eval_segment", "full"]
    assert prepare.main(argv) == 0
    return out


def reference_source(root, src, frames, level_dbfs):
    """Independent reading: the whole file, sliced, scaled to the target RMS in float64."""
    audio, _ = sf.read(str(root / src["path"]), dtype="float64")
    piece = audio[src["start"] : src["start"] + frames]
    return piece * 10 ** ((level_dbfs + src["gain_db"]) / 20) / np.sqrt(np.mean(piece**2))


@pytest.mark.parametrize("split", ["train", "test"])
def test_items_are_float32_sources_at_their_stored_level_summing_to_the_mixture(dataset_dir, split):
    ds = MixtureDataset(list_path(dataset_dir, 2, split))
    assert ds.sample_rate == 16000 and ds.n_sources == 2 and len(ds) == 18
    lengths = set()
    for i in (0, 7):
        mixture, sources = ds[i]
        frames, specs = ds.spec(i)
        assert mixture.dtype == sources.dtype == torch.float32
        assert mixture.shape == (frames,) and sources.shape == (2, frames)
        torch.testing.assert_close(mixture, sources.sum(0), rtol=0, atol=1e-6)
        for k, src in enumerate(specs):
            want = reference_source(dataset_dir, src, frames, ds.level_dbfs)
            np.testing.assert_allclose(sources[k].numpy(), want, rtol=1e-4, atol=1e-6)
        lengths.add(frames)
    assert lengths == {16000} if split == "train" else len(lengths) == 2  # full length: variable


def _record_reads(monkeypatch) -> list[tuple[str, int, int, int]]:
    """Every SoundFile.read from now on: (file, position, frames asked, file length)."""
    reads = []
    real_read = sf.SoundFile.read

    def read(self, frames=-1, **kwargs):
        reads.append((self.name, self.tell(), frames, self.frames))
        return real_read(self, frames, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", read)
    return reads


def test_reader_of_a_large_list_decodes_only_the_frames_it_needs(dataset_dir, monkeypatch):
    monkeypatch.setattr(dataset_module, "CACHE_MB", 0)  # as for LibriSpeech's training sets
    ds = MixtureDataset(list_path(dataset_dir, 2, "train"))
    reads = _record_reads(monkeypatch)
    frames, specs = ds.spec(3)
    ds[3]
    assert [(pos, n) for _, pos, n, _ in reads] == [(src["start"], frames) for src in specs]
    assert all(n < length for _, _, n, length in reads) and any(pos for _, pos, _, _ in reads)


def test_a_small_list_reads_each_file_once_whole_and_gives_the_same_items(dataset_dir, monkeypatch):
    path = list_path(dataset_dir, 2, "train")
    monkeypatch.setattr(dataset_module, "CACHE_MB", 0)
    from_disk = MixtureDataset(path, dynamic_mixing=True, seed=1)
    monkeypatch.undo()
    cached = MixtureDataset(path, dynamic_mixing=True, seed=1)
    reads = _record_reads(monkeypatch)
    for epoch in (0, 1):
        cached.set_epoch(epoch)
        from_disk.set_epoch(epoch)
        for i in range(len(cached)):
            want, got = from_disk[i], cached[i]
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])  # the same samples, bit for bit
    whole = [(name, pos, n) for name, pos, n, _ in reads if n == -1]
    assert whole and all(pos == 0 for _, pos, _ in whole)  # the cache's reads: whole files from the start
    names = [name for name, _, _ in whole]
    assert len(names) == len(set(names))  # each file decoded once over both epochs
    assert len(reads) - len(whole) == 2 * 2 * len(cached)  # from_disk's slices: every source of every item


def test_wrong_sample_rate_and_missing_files_are_clear_errors(dataset_dir, tmp_path):
    lst = json.loads(list_path(dataset_dir, 2, "test").read_text())
    (tmp_path / "2mix").mkdir()
    src = lst["mixtures"][0]["sources"][0]
    sf.write(tmp_path / "odd.flac", np.zeros(80000, dtype=np.float32), 8000)
    src["path"] = "odd.flac"
    (tmp_path / "2mix" / "test.json").write_text(json.dumps(lst))
    ds = MixtureDataset(tmp_path / "2mix" / "test.json")  # paths are relative to tmp_path now
    with pytest.raises(AudioError, match=r"odd\.flac: 8000 Hz, but .*test\.json is at 16000 Hz"):
        ds[0]
    with pytest.raises(AudioError, match=r"LibriSpeech/test-clean/.*\.flac: no such file; is .* complete"):
        ds[1]  # LibriSpeech/ is not beside this copy of the list


def test_dynamic_mixing_is_reproducible_per_epoch_and_resumable(dataset_dir):
    path = list_path(dataset_dir, 2, "train")
    ds = MixtureDataset(path, dynamic_mixing=True, seed=3)
    epoch0 = [ds.spec(i) for i in range(len(ds))]
    ds.set_epoch(1)
    epoch1 = [ds.spec(i) for i in range(len(ds))]
    assert epoch0 != epoch1
    resumed = MixtureDataset(path, dynamic_mixing=True, seed=3)
    resumed.set_epoch(1)
    assert [resumed.spec(i) for i in range(len(ds))] == epoch1
    other_seed = MixtureDataset(path, dynamic_mixing=True, seed=4)
    assert [other_seed.spec(i) for i in range(len(ds))] != epoch0
    for (frames, sources), mix in zip(epoch1, ds.mixtures):
        assert frames == 16000 and len({s["speaker"] for s in sources}) == 2
        assert sources[0]["path"] == mix["sources"][0]["path"]  # every utterance still leads one mixture
        assert all(-2.5 <= s["gain_db"] <= 2.5 for s in sources)
    partners = {sources[1]["path"] for _, sources in epoch0 + epoch1}
    assert len(partners) > len(ds) // 2  # new pairs, not the static list's
    mixture, sources = ds[0]
    torch.testing.assert_close(mixture, sources.sum(0), rtol=0, atol=1e-6)


def test_dataloader_workers_give_the_same_batches(dataset_dir):
    ds = MixtureDataset(list_path(dataset_dir, 2, "train"), dynamic_mixing=True, seed=0)
    ds.set_epoch(2)
    batches = [
        list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers))[:2]
        for workers in (0, 2)
    ]  # fmt: skip
    for (mix0, src0), (mix2, src2) in zip(*batches):
        assert mix0.shape == (4, 16000) and src0.shape == (4, 2, 16000)
        assert torch.equal(mix0, mix2) and torch.equal(src0, src2)


def test_segment_seconds_crops_and_drops_short_mixtures(dataset_dir):
    full = MixtureDataset(list_path(dataset_dir, 2, "valid"))
    cropped = MixtureDataset(list_path(dataset_dir, 2, "valid"), segment_seconds=1.5)
    kept = [m for m in full.mixtures if m["frames"] >= 24000]
    assert 0 < len(cropped) == len(kept) < len(full) and cropped.n_dropped == len(full) - len(kept)
    mixture, sources = cropped[0]
    assert mixture.shape == (24000,) and sources.shape == (2, 24000)
    with pytest.raises(DnnsepError, match="dynamic mixing needs fixed-length mixtures"):
        MixtureDataset(list_path(dataset_dir, 2, "valid"), dynamic_mixing=True)


def test_change_length_plays_faster_and_higher_by_the_factor():
    from dnnsep.data.dataset import change_length

    sr, f0 = 16000, 400.0
    for factor in (0.95, 1.05):
        x = np.sin(2 * np.pi * f0 * np.arange(round(16000 * factor)) / sr)  # 1 s * factor of a tone
        y = change_length(x, 16000)  # played at sr: lasts 1 s, so the tone is factor times higher
        assert y.shape == (16000,) and y.dtype == np.float32
        peak = np.argmax(np.abs(np.fft.rfft(y * np.hanning(16000)))) * sr / 16000  # 1-Hz bins
        assert abs(peak - f0 * factor) <= 1.0, (factor, peak)
        assert abs(np.sqrt(np.mean(y[500:-500] ** 2)) - np.sqrt(0.5)) < 0.02  # the level is kept


def test_speed_perturbation_resamples_each_source_by_a_seeded_factor(dataset_dir):
    path = list_path(dataset_dir, 2, "train")
    plain = MixtureDataset(path, dynamic_mixing=True, seed=3)
    ds = MixtureDataset(path, dynamic_mixing=True, seed=3, speed_perturb=0.05)
    factors = [ds.speed_factors(i, 2) for i in range(len(ds))]
    assert {f for pair in factors for f in pair} == {0.95, 1.0, 1.05}
    assert plain.speed_factors(0, 2) == [1.0, 1.0]
    ds.set_epoch(1)
    assert [ds.speed_factors(i, 2) for i in range(len(ds))] != factors  # new factors every epoch
    ds.set_epoch(0)
    assert [MixtureDataset(path, speed_perturb=0.05, seed=3).speed_factors(i, 2) for i in range(3)] == factors[:3]
    i = next(i for i, f in enumerate(factors) if f[0] == 1.05)
    mixture, sources = ds[i]
    assert sources.shape == plain[i][1].shape  # the segment length is unchanged ...
    torch.testing.assert_close(mixture, sources.sum(0), rtol=0, atol=1e-6)
    frames, specs = ds.spec(i)
    src = specs[0]
    audio, _ = sf.read(str(dataset_dir / src["path"]), dtype="float64")
    start = max(0, min(src["start"], len(audio) - round(frames * 1.05)))
    read = audio[start : start + round(frames * 1.05)]  # ... but 5 % more speech went into it
    from dnnsep.data.dataset import change_length

    expected = change_length(read, frames).astype(np.float64)
    expected *= 10 ** ((ds.level_dbfs + src["gain_db"]) / 20) / np.sqrt(np.mean(expected**2))
    np.testing.assert_allclose(sources[0].numpy(), expected, atol=2e-5)
    with pytest.raises(DnnsepError):
        MixtureDataset(path, speed_perturb=1.5)
