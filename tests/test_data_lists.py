"""Mixture lists: reproducible per seed, distinct speakers, valid paths, frames and gains."""

from __future__ import annotations

import hashlib
import json

import pytest
import soundfile as sf
from corpus import SEGMENT, tiny_corpus

from dnnsep.bin import prepare
from dnnsep.data import list_path, read_list
from dnnsep.data.librispeech import Utterance
from dnnsep.data.lists import Rng, build_list, dumps_list, write_list
from dnnsep.errors import DnnsepError

SPLITS = ("train", "valid", "test")


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory):
    return tiny_corpus(tmp_path_factory)


def make_lists(dataset_dir, corpus_root, n_sources=2, *args):
    assert prepare.main([str(dataset_dir), str(n_sources), "--librispeech_root", str(corpus_root), "--no_progress",
                         *SEGMENT, *map(str, args)]) == 0  # fmt: skip
    return {split: list_path(dataset_dir, n_sources, split) for split in SPLITS}


@pytest.fixture(scope="module")
def lists3(corpus_root, tmp_path_factory):
    """3-speaker lists with 1-s train and full-length valid/test mixtures, gains within +-4 dB."""
    return make_lists(tmp_path_factory.mktemp("lists3"), corpus_root, 3, "--eval_segment", "full", "--gain_db", "4")


def test_same_seed_gives_byte_identical_lists_and_another_seed_different_ones(corpus_root, tmp_path):
    a = make_lists(tmp_path / "a", corpus_root)
    b = make_lists(tmp_path / "b", corpus_root)
    c = make_lists(tmp_path / "c", corpus_root, 2, "--seed", "1")
    for split in SPLITS:
        assert a[split].read_bytes() == b[split].read_bytes()
        assert a[split].read_bytes() != c[split].read_bytes()


def test_lists_are_the_same_on_every_python_and_machine():
    """A golden digest: fails if the draw changes (another Python's random, set/dict order, float format)."""
    utts = [
        Utterance(f"LibriSpeech/x/{s}/1/{s}-1-{u:04d}.flac", str(s), 16000 + 3001 * ((s * 7 + u * 3) % 11))
        for s in range(10, 16)
        for u in range(4)
    ]
    digests = []
    for segment in (20000, None):
        lst = build_list(utts, split="train", subset="x", n_sources=3, seed=7, segment_frames=segment, n_mixtures=30)
        digests.append(hashlib.sha256(dumps_list(lst).encode()).hexdigest())
    assert digests == [
        "31a55d670fa93079d334d69fb2e94afe7e3f786b632ec09ce39cb56ce4aeea0b",
        "cbd18cccd80a71358c4780e07f9ca73818a85db04f84765297bad1893106b82e",
    ]
    assert Rng(0).uniform(0, 1) == 0.8444218515250481  # random.Random(0).random(), guaranteed by Python


@pytest.mark.parametrize("split", SPLITS)
def test_mixtures_have_distinct_speakers_existing_paths_valid_frames_and_gains(lists3, split):
    lst = read_list(lists3[split])
    root = lists3[split].parent.parent
    assert lst["n_sources"] == 3 and lst["gain_db"] == [-4.0, 4.0] and lst["split"] == split
    frames_of = {u["path"]: u["frames"] for u in lst["utterances"]}
    gains = []
    for mix in lst["mixtures"]:
        speakers = [src["speaker"] for src in mix["sources"]]
        assert len(set(speakers)) == 3, mix["id"]
        for src in mix["sources"]:
            assert (root / src["path"]).is_file()
            assert src["path"].split("/")[2] == src["speaker"]
            assert 0 <= src["start"] and src["start"] + mix["frames"] <= frames_of[src["path"]]
            gains.append(src["gain_db"])
        if split == "train":
            assert mix["frames"] == lst["segment_frames"] == 16000
        else:  # full length: as long as the shortest utterance, from the start
            assert lst["segment_frames"] is None
            assert mix["frames"] == min(frames_of[s["path"]] for s in mix["sources"])
            assert all(src["start"] == 0 for src in mix["sources"])
    assert all(-4.0 <= g <= 4.0 for g in gains) and max(gains) - min(gains) > 4  # spread over the range
    # each utterance long enough is the first source of exactly one mixture
    firsts = sorted(mix["sources"][0]["path"] for mix in lst["mixtures"])
    long_enough = sorted(p for p, n in frames_of.items() if n >= (lst["segment_frames"] or 1))
    assert firsts == long_enough
    assert len({mix["id"] for mix in lst["mixtures"]}) == len(lst["mixtures"])
    # the lengths recorded are the files' real lengths
    some = lst["utterances"][0]
    assert sf.info(str(root / some["path"])).frames == some["frames"]


def test_utterances_shorter_than_the_segment_are_left_out(corpus_root, tmp_path, capsys):
    lists = make_lists(tmp_path, corpus_root, 2, "--segment", "2")
    lst = read_list(lists["train"])
    short = [u for u in lst["utterances"] if u["frames"] < 32000]
    assert short and len(lst["mixtures"]) == len(lst["utterances"]) - len(short)
    assert f"({len(short)} utterances shorter than 2 s left out)" in capsys.readouterr().out


def test_number_of_mixtures_can_be_chosen_and_cycles_through_utterances():
    utts = [Utterance(f"L/x/{s}/1/{s}-1-{u}.flac", str(s), 20000) for s in range(3) for u in range(2)]
    lst = build_list(utts, split="train", subset="x", n_sources=2, seed=0, segment_frames=16000, n_mixtures=14)
    assert len(lst["mixtures"]) == 14 and len({m["id"] for m in lst["mixtures"]}) == 14
    firsts = [m["sources"][0]["path"] for m in lst["mixtures"]]
    assert sorted(firsts[:6]) == sorted(u.path for u in utts) == sorted(firsts[6:12])
    lst = build_list(utts, split="train", subset="x", n_sources=2, seed=0, segment_frames=16000, gain_db=0)
    assert {s["gain_db"] for m in lst["mixtures"] for s in m["sources"]} == {0.0}


def test_too_few_speakers_is_a_clear_error():
    utts = [Utterance("L/x/1/1/1-1-0.flac", "1", 50000), Utterance("L/x/2/1/2-1-0.flac", "2", 1000)]
    with pytest.raises(DnnsepError, match=r"x: only 1 speaker\(s\) have utterances at least 1 s long .* lower the"):
        build_list(utts, split="valid", subset="x", n_sources=2, seed=0, segment_frames=16000)


def test_read_list_rejects_bad_files_with_the_file_name(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DnnsepError, match=r"bad\.json: not valid JSON"):
        read_list(bad)
    bad.write_text(json.dumps({"mixtures": []}))
    with pytest.raises(DnnsepError, match=r"bad\.json: not a dnnsep mixture list"):
        read_list(bad)
    bad.write_text(json.dumps({"format": "dnnsep-mixtures", "version": 99}))
    with pytest.raises(DnnsepError, match=r"bad\.json: list version 99"):
        read_list(bad)
    with pytest.raises(DnnsepError, match=r"missing\.json: no such mixture list; run .*prepare\.sh"):
        read_list(tmp_path / "missing.json")
    with pytest.raises(DnnsepError, match="unknown split 'dev'"):
        list_path(tmp_path, 2, "dev")


def test_write_list_is_idempotent_and_readable_by_others(tmp_path):
    utts = [Utterance(f"L/x/{s}/1/{s}-1-0.flac", str(s), 20000) for s in range(3)]
    lst = build_list(utts, split="test", subset="x", n_sources=2, seed=0, segment_frames=None)
    path = tmp_path / "2mix" / "test.json"
    assert write_list(lst, path) is True
    assert write_list(lst, path) is False
    assert path.stat().st_mode & 0o044  # not the 0600 of a temporary file
    assert read_list(path) == json.loads(dumps_list(lst))
