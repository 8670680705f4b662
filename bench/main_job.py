"""The main job's honest figure: run it N times (one training seed each) as a user does, score every
model on a test list kept for reporting only, and write the figures with the machine they came from.

Each run is ``bash utils/run_main_job.sh --seed S --out_dir OUT/seedS`` (data -> train -> test; the
offline corpus is made by the first run and reused), timed as a whole.  Then a **report test list**
is made once: the same corpus recipe's test subset with a fresh ``--content_seed`` (new accents,
pitches, speeds and sentences on the variants the training subset never heard: no voice in it was
ever used to choose anything), 100 mixtures of whole utterances; every run's ``best.pth`` is scored
on it.  So is a **held-out engine list**: 100 mixtures of festival voices (diphone synthesis, an engine
the job never trains on; its voice recorded from a person flite also voices is left out, so that
jobs trained with flite's voices compare on the same list), which
tells whether the model learnt voices or its engines' sound.  The JSON holds per-run figures (the
job's own test list, the report list, the held-out engine list, epochs, epoch times, total seconds),
their mean and standard deviation, and the CPU's model and flags.

``--add`` runs more seeds and adds them to the runs already in ``--out`` (same CPU and settings);
``--also_score BEST.pth ...`` scores other models (an earlier release's jobs, say) on the same two
lists, for a side-by-side.

``--isa avx2`` runs the jobs as on an AVX2-only CPU in float32 (oneDNN and ATen limited to AVX2,
``DNNSEP_CPU_BF16=0``), the most common laptop: the job's target machine.  ``--tiny`` runs a tiny
version end to end (the tests run it, so it does not rot).

    python3 bench/main_job.py --runs 3 --isa avx2 --out bench/results/main_job_avx2.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "librispeech" / "dprnn_tasnet"
MINI = RECIPE / "conf" / "mini.yaml"
ISA_ENV = {  # as on a CPU without AVX-512 and bfloat16 instructions: oneDNN, ATen and dnnsep's AMP told so
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "DNNSEP_CPU_BF16": "0"},
    "native": {},
}
TINY_YAML = """\
extends: {mini}
dataset_dir: {data}
prepare:
  subsets: [dev-clean, dev-clean, test-clean]
  segment: 1.0
  eval_segment: 1.0
  n_train: 8
  n_valid: 4
  n_test: 4
  no_progress: true
corpus:
  synthetic_speakers: 4
  synthetic_utts: 2
model:
  n_filters: 8
  hidden: 8
  n_blocks: 1
max_minutes: 0.03
num_workers: 0
cpu_processes: 1
"""


def cpu() -> dict:
    """The CPU's model name and its vector flags (those that decide the kernels)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def run_job(seed: int, out: Path, env: dict, extra: list[str], *, recipe: str = "dprnn_tasnet") -> dict:
    """One whole job (another ``recipe``: its own run.sh with conf/mini.yaml); its figures from what it wrote."""
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    if recipe == "dprnn_tasnet":
        command = ["bash", str(ROOT / "utils" / "run_main_job.sh")]
    else:
        command = ["bash", str(ROOT / "egs" / "librispeech" / recipe / "run.sh"), "--config", "conf/mini.yaml"]
    done = subprocess.run(
        [*command, "--seed", str(seed), "--out_dir", str(out), *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    total = time.perf_counter() - start
    (out / "job.log").parent.mkdir(parents=True, exist_ok=True)
    (out / "job.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"main_job: the job with seed {seed} failed; see {out / 'job.log'}")
    figures = job_figures(seed, out)
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # before and after: 2 = busy
    return {**figures, "total_s": round(total, 1), "load_average_1min": load}


def job_figures(seed: int, out: Path) -> dict:
    """What a finished job in ``out`` wrote: its experiment, epochs, epoch times, own test figures, best.pth."""
    found = list(out.rglob("model/best.pth"))
    if len(found) != 1:
        raise SystemExit(f"main_job: {out} holds {len(found)} trained models, not one; give each job its own folder")
    (best,) = found
    exp = best.parent.parent
    own = json.loads(next(exp.glob("eval/*/summary.json")).read_text())
    with open(exp / "loss" / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    seconds = [float(r["seconds"]) for r in rows if r.get("seconds")]
    stopped = [line for line in (exp / "log" / "train.log").read_text().splitlines() if "time budget" in line]
    return {
        "seed": seed,
        "experiment": str(exp.relative_to(out)),
        "epochs": len(rows),
        "epoch_s": {"median": round(statistics.median(seconds), 2), "min": min(seconds), "max": max(seconds)}
        if seconds
        else None,
        "stopped": stopped[-1].split(" ", 2)[-1] if stopped else None,
        "test_own": {k: round(own[k]["mean"], 3) for k in ("si_sdri", "sdri", "stoi", "pesq") if k in own},
        "best": str(best),
    }


HELD_OUT = "festival"  # the engine no recipe trains on (dnnsep.data.tts.AUTO)


def report_list(
    folder: Path,
    env: dict,
    *,
    report_seed: int,
    tiny: bool,
    held_out: bool = False,
    corpus: Path | None = None,
    prepare: Sequence[str] = (),
) -> Path:
    """The report test list: the job's corpus recipe's test subset, new voices and sentences (``report_seed``);
    ``held_out``: the voices of the held-out engine instead (all of them, less those the training engines voice).
    ``corpus``: one made before with the same seed (not made again); ``prepare``: more options of prepare (rooms
    and noise, say)."""
    if corpus is not None and held_out:
        raise ValueError("report_list: held_out makes its own corpus; do not give one")
    speakers, utts, n_test = ("4", "2", "4") if tiny else ("200", "2", "100")
    python = env.get("PYTHON", sys.executable)
    if corpus is None:
        corpus = folder / "corpus"
        if held_out:
            voices = ["--subsets", "test-clean", "--engine", HELD_OUT, "--avoid", "espeak", "flite"]
        else:
            voices = ["--subsets", "dev-clean", "test-clean", "--only", "test-clean"]
        subprocess.run([python, "-m", "dnnsep.bin.make_corpus", str(corpus), *voices, "--content_seed",
                        str(report_seed), "--n_speakers", speakers, "--utts_per_speaker", utts, "--seconds", "4", "6",
                        "--quiet"], check=True, env=env)  # fmt: skip
    lists = folder / "lists"
    subprocess.run([python, "-m", "dnnsep.bin.prepare", str(lists), "2", "--librispeech_root",
                    str(corpus / "LibriSpeech"), "--subsets", "test-clean", "test-clean", "test-clean",
                    "--n_train", "2", "--n_valid", "2", "--n_test", n_test, "--eval_segment",
                    "1.0" if tiny else "full", "--seed", str(report_seed), "--no_progress", *prepare],
                   check=True, env=env, stdout=subprocess.DEVNULL)  # fmt: skip
    return lists


def score(best: str, lists: Path, out: Path, env: dict, *extra: str) -> dict:
    python = env.get("PYTHON", sys.executable)
    subprocess.run([python, "-m", "dnnsep.bin.evaluate", best, "--dataset_dir", str(lists), "--out_dir", str(out),
                    "--n_examples", "0", *extra], check=True, env=env, stdout=subprocess.DEVNULL)  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    return {k: round(summary[k]["mean"], 3) for k in ("si_sdri", "sdri", "stoi", "pesq") if k in summary}


def spread(values: list[float]) -> dict:
    return {
        "mean": round(statistics.fmean(values), 3),
        "std": round(statistics.stdev(values), 3) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="jobs, one training seed each (default: 3)")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 111, 112, ...)")
    parser.add_argument("--report_seed", type=int, default=2027, help="content seed of the report test list")
    parser.add_argument("--isa", choices=tuple(ISA_ENV), default="native", help="avx2: as on an AVX2-only CPU")
    parser.add_argument("--work", help="where the jobs' experiments go (default: a temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "main_job.json"), help="the JSON")
    parser.add_argument("--tiny", action="store_true", help="a tiny job (a few seconds of training)")
    parser.add_argument("--config", help="another config for the job (a YAML that extends conf/mini.yaml, say)")
    parser.add_argument(
        "--add", action="store_true", help="add these seeds' runs to those already in --out (same CPU and settings)"
    )
    parser.add_argument("--also_score", nargs="+", default=[], metavar="BEST", help="other models scored on the "
                        "report and held-out engine lists too (not jobs of this run: not in the spreads)")  # fmt: skip
    parser.add_argument(
        "--recipe", default="dprnn_tasnet", help="another model's recipe run the same way (its conf/mini.yaml)"
    )
    args = parser.parse_args(argv)
    if args.tiny and args.recipe != "dprnn_tasnet":
        parser.error("--tiny runs the DPRNN recipe only")
    seeds = args.seeds or [111 + i for i in range(args.runs)]
    earlier, also = [], []
    settings = {"isa": args.isa, "recipe": args.recipe, "config": args.config, "report_seed": args.report_seed}
    if args.add and Path(args.out).is_file():
        before = json.loads(Path(args.out).read_text())
        if before["cpu"] != cpu() or any(before.get(k) != v for k, v in settings.items()):
            raise SystemExit(f"{args.out}: made on another CPU or with other settings; not adding to it")
        earlier, also = before["runs"], before.get("also_scored", [])
        if {r["seed"] for r in earlier} & set(seeds):
            raise SystemExit(f"{args.out}: already holds seeds {sorted({r['seed'] for r in earlier})}")
    env = {**os.environ, **ISA_ENV[args.isa]}
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix="main_job-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        extra: list[str] = []
        if args.tiny:
            (work / "tiny.yaml").write_text(TINY_YAML.format(mini=MINI, data=work / "data"))
            extra = ["--config", str(work / "tiny.yaml")]
        elif args.config:
            extra = ["--config", str(Path(args.config).resolve())]
        runs = []
        for seed in seeds:
            print(f"main_job: seed {seed} ({args.isa})", flush=True)
            runs.append(run_job(seed, work / f"seed{seed}", env, extra, recipe=args.recipe))
            print(
                f"  {runs[-1]['total_s']:.0f} s, {runs[-1]['epochs']} epochs, test {runs[-1]['test_own']}", flush=True
            )
        lists = report_list(work / "report", env, report_seed=args.report_seed, tiny=args.tiny)
        engine = report_list(work / "held_out", env, report_seed=args.report_seed, tiny=args.tiny, held_out=True)
        for run in runs:
            best = run.pop("best")
            run["test_report"] = score(best, lists, work / "report" / f"eval-{run['seed']}", env)
            run["test_held_out_engine"] = score(best, engine, work / "held_out" / f"eval-{run['seed']}", env)
            print(f"  seed {run['seed']}: report list {run['test_report']}, held-out engine "
                  f"{run['test_held_out_engine']}", flush=True)  # fmt: skip
        for k, best in enumerate(args.also_score):
            scored = {"model": str(Path(best).resolve())}
            scored["test_report"] = score(best, lists, work / "report" / f"eval-also{k}", env)
            scored["test_held_out_engine"] = score(best, engine, work / "held_out" / f"eval-also{k}", env)
            also.append(scored)
            print(f"  {best}: report list {also[-1]['test_report']}, held-out engine "
                  f"{also[-1]['test_held_out_engine']}", flush=True)  # fmt: skip
    runs = earlier + runs
    result = {
        "what": "the main job (bash utils/run_main_job.sh), whole runs, each model scored on its own test list and "
        "on a report list of voices never used to choose anything (bench/main_job.py)",
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu(),
        **settings,
        "env": ISA_ENV[args.isa],
        "runs": runs,
        "test_report_si_sdri": spread([r["test_report"]["si_sdri"] for r in runs]),
        "test_own_si_sdri": spread([r["test_own"]["si_sdri"] for r in runs]),
        "held_out_engine": HELD_OUT,
        "test_held_out_engine_si_sdri": spread([r["test_held_out_engine"]["si_sdri"] for r in runs]),
        "held_out_engine_below_own_db": spread(
            [r["test_own"]["si_sdri"] - r["test_held_out_engine"]["si_sdri"] for r in runs]
        ),
        "total_s": spread([r["total_s"] for r in runs]),
        "also_scored": also,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp_out, out)
    report = result["test_report_si_sdri"]
    engine = result["test_held_out_engine_si_sdri"]
    print(f"main_job: report-list SI-SDRi {report['mean']:.2f} dB (std {report['std']}), held-out engine "
          f"({HELD_OUT}) {engine['mean']:.2f} dB (std {engine['std']}) over {len(runs)} run(s); "
          f"wrote {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
