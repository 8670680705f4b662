"""Every bench script has a tiny mode, run here so that none rots: bench_model, bench_data,
bench_separate, main_job (with espeak_pair on the model it trains).  They assert what the scripts
write, not their figures (figures come from the scripts' full runs, on an idle machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
pytestmark = pytest.mark.slow
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def run(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.mark.parametrize("model", ["dprnn_tasnet", "conv_tasnet", "sepformer"])
def test_bench_model_tiny(tmp_path, model):
    out = tmp_path / "model.json"
    run("bench_model.py", "--model", model, "--configs", "tiny", "--rounds", "1", "--per_process", "1",
        "--long_seconds", "1", "--threads", "1", "--json", str(out))  # fmt: skip
    written = json.loads(out.read_text())
    tiny = written["tiny"]
    assert written["machine"]["cpu"]["model"] and written["machine"]["threads"] == 1
    isa = ("ATEN_CPU_CAPABILITY", "DNNSEP_CPU_BF16", "ONEDNN_MAX_CPU_ISA")  # recorded when set: as on another CPU
    assert written["machine"]["env"] == {k: os.environ[k] for k in isa if k in os.environ}
    assert tiny["rtf_5s"]["ours"] > 0 and tiny["train_step_s"]["ours"] > 0 and tiny["long"]["ours"]["seconds"] > 0


def test_bench_data_tiny():
    done = run("bench_data.py", "--tiny", "--batches", "2", "--seconds", "1", "--json")
    assert json.loads(done.stdout.strip().splitlines()[-1])


def test_bench_separate_tiny(tmp_path):
    out = tmp_path / "separate.json"
    done = run("bench_separate.py", "--minutes", "0.05", "--json", str(out))
    assert "s / audio min" in done.stdout and json.loads(out.read_text())


def test_main_job_tiny_runs_the_job_twice_and_scores_a_report_list_then_espeak_pair_checks_unheard_voices(tmp_path):
    out, work = tmp_path / "main_job.json", tmp_path / "work"
    run("main_job.py", "--tiny", "--runs", "1", "--work", str(work), "--out", str(out))
    first = next((work / "seed111").rglob("model/best.pth"))
    # a second seed added to the first's JSON, and the first's model scored beside it (as an earlier release's)
    run("main_job.py", "--tiny", "--seeds", "112", "--add", "--also_score", str(first), "--work", str(work / "more"),
        "--out", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    assert [r["seed"] for r in result["runs"]] == [111, 112]
    (also,) = result["also_scored"]
    assert also["model"] == str(first.resolve()) and set(also["test_held_out_engine"]) >= {"si_sdri", "sdri"}
    same_lists = result["runs"][0]["test_report"]["si_sdri"]  # the first run's model on the lists made again
    assert also["test_report"]["si_sdri"] == pytest.approx(same_lists, abs=0.01)
    for r in result["runs"]:
        assert r["stopped"].startswith("time budget") and r["epochs"] >= 1
        assert set(r["test_own"]) >= {"si_sdri", "sdri"} and set(r["test_report"]) >= {"si_sdri", "sdri"}
        assert set(r["test_held_out_engine"]) >= {"si_sdri", "sdri"}
    spread = result["test_report_si_sdri"]
    assert spread["std"] is not None and spread["min"] <= spread["mean"] <= spread["max"]
    assert result["cpu"]["model"] and "avx2" in result["cpu"]["flags"] or sys.platform != "linux"
    corpus_names = (work / "report" / "corpus" / "LibriSpeech" / "SPEAKERS.TXT").read_text()
    assert "test-clean" in corpus_names and "dev-clean" not in corpus_names  # only the report's test subset
    # the held-out engine's list: festival voices only, none recorded from a person flite voices
    table = (work / "held_out" / "corpus" / "LibriSpeech" / "SPEAKERS.TXT").read_text().splitlines()[1:]
    engine_names = [line.split("|")[4].split()[:2] for line in table]
    assert {e for e, _ in engine_names} == {"festival"}
    voices = {v for _, v in engine_names}
    assert len(voices) == 4 and "cmu_us_slt_arctic_hts" not in voices  # flite voices slt too
    trained_on = (next(work.rglob("synthetic/LibriSpeech")) / "SPEAKERS.TXT").read_text()
    assert "| espeak-ng " in trained_on and "festival" not in trained_on
    assert result["held_out_engine"] == "festival" and result["held_out_engine_below_own_db"]["std"] is not None
    # espeak_pair on the first run's model: the voices it picks were not in the subset that model trained on
    best = next((work / "seed111").rglob("model/best.pth"))
    corpus = next(work.rglob("synthetic/LibriSpeech")).parent
    done = run("espeak_pair.py", str(best), "--corpus", str(corpus), "--out", str(tmp_path / "pair"))
    pair = json.loads((tmp_path / "pair" / "result.json").read_text())
    assert pair["train_subset"] == "dev-clean" and "SI-SDRi" in done.stdout
    speakers = (corpus / "LibriSpeech" / "SPEAKERS.TXT").read_text().splitlines()
    heard = {line.split("+")[-1].split()[0] for line in speakers if "| dev-clean" in line and "espeak-ng" in line}
    assert not {v.split("+", 1)[1] for v in pair["voices"]} & heard
    refused = subprocess.run([sys.executable, str(BENCH / "espeak_pair.py"), str(best), "--corpus", str(corpus),
                              "--voices", sorted(heard)[0], sorted(heard)[-1]], capture_output=True, text=True,
                             env=ENV)  # fmt: skip
    assert refused.returncode != 0 and "trained on (dev-clean): choose unheard ones" in refused.stderr


def test_bench_rooms_quality_tiny_trains_both_models_and_scores_each_on_both_lists(tmp_path):
    out = tmp_path / "rooms_quality.json"
    run("bench_rooms_quality.py", "--tiny", "--seeds", "1", "--work", str(tmp_path / "work"), "--out", str(out))
    written = json.loads(out.read_text())
    assert sorted(written["si_sdri"]) == [
        "clean_on_clean", "clean_on_noisy_reverb", "noisy_reverb_on_clean", "noisy_reverb_on_noisy_reverb"
    ]  # fmt: skip
    (run_,) = written["runs"]
    assert run_["clean"]["test_list"] != run_["noisy_reverb"]["test_list"]  # each model on both lists
    assert written["cpu"]["model"] and set(written["target_met"]) == {"gain_at_least_3_db", "within_1_db_on_clean"}
    assert written["lists_seed"] is None and "reused" not in run_["clean"]

    # a lever's figures: the same jobs, not run again, scored on lists of another content seed
    work = tmp_path / "work"
    logs = {p: p.stat().st_mtime_ns for p in work.glob("seed1-*/job.log")}
    select = tmp_path / "select.json"
    run("bench_rooms_quality.py", "--tiny", "--seeds", "1", "--work", str(work), "--out", str(select), "--reuse",
        "--lists_seed", "7")  # fmt: skip
    chosen = json.loads(select.read_text())
    (again,) = chosen["runs"]
    assert chosen["lists_seed"] == 7 and again["clean"]["reused"] and again["noisy_reverb"]["reused"]
    assert {p: p.stat().st_mtime_ns for p in work.glob("seed1-*/job.log")} == logs and len(logs) == 2
    assert again["clean"]["epochs"] == run_["clean"]["epochs"]
    for model in ("clean", "noisy_reverb"):
        for test in ("clean", "noisy_reverb"):
            scored = json.loads((work / f"seed1-{model}-on-{test}-lists7" / "summary.json").read_text())
            assert Path(scored["list"]).is_relative_to(work.resolve() / "lists7" / test), scored["list"]
    rooms = json.loads((work / "lists7" / "noisy_reverb" / "lists" / "2mix" / "test.json").read_text())
    clean = json.loads((work / "lists7" / "clean" / "lists" / "2mix" / "test.json").read_text())
    assert all(m["scene"]["room"] for m in rooms["mixtures"]) and not any(m.get("scene") for m in clean["mixtures"])
    assert [m["id"] for m in rooms["mixtures"]] == [m["id"] for m in clean["mixtures"]]  # the same pairs, in rooms
    assert rooms["seed"] == clean["seed"] == 7  # drawn for the seed asked for, not the jobs' own


def test_bench_long_file_tiny(tmp_path):
    out = tmp_path / "long.json"
    run("bench_long_file.py", "--tiny", "--minutes", "0.05", "--threads", "1", "--json", str(out))
    ours = json.loads(out.read_text())["results"]["ours"]
    assert ours["outcome"] == "separated, output (2, 48000)" and ours["seconds"] >= 0  # 3 s at 16 kHz
    # a pass that needs more than its address-space limit fails in its own process, saying so
    run("bench_long_file.py", "--tiny", "--minutes", "0.05", "--threads", "1", "--kinds", "ours", "--memory_gb", "0.2",
        "--json", str(out))  # fmt: skip
    ours = json.loads(out.read_text())["results"]["ours"]
    assert ours["outcome"].startswith(("failed: ", "exit ")), ours
