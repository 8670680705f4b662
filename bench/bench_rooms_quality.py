"""Clean-trained against noisy-reverberant-trained: the mini DPRNN, each on a clean and on a noisy-reverberant test.

    python bench/bench_rooms_quality.py [--seeds 111 112 113] [--out bench/results/rooms_quality.json] [--add] [--tiny]
                                        [--work DIR] [--lists_seed SEED] [--reuse]

For each training seed, two whole main jobs (``utils/run_main_job.sh``, the same 13-minute budget on
the CPU): ``conf/mini.yaml`` (clean, anechoic mixtures) and ``conf/mini_noisy_reverb.yaml``
(simulated rooms, RT60 0.1-0.8 s, direct-path targets, synthetic noise at -5 to +15 dB, a bank of 64
rooms of which 16 are new every epoch, three quarters of the mixtures left dry and clean: ``dry_share``).  Each
job tests its model on its own test list; then each model is scored on the other's too, so both models
meet both lists: the clean list, and the noisy-reverberant one, whose rooms and noise are drawn for the
test list and never trained on, with one reference for both models: each voice's direct path and early
reflections (``--reverb_target direct``). The JSON holds every figure, the mean and spread over seeds,
the CPU, and the issue's two checks: the noisy-reverberant model at least 3 dB above the clean one on
the noisy-reverberant list, and within 1 dB of it on the clean list.  ``--add``: run more seeds and add
them to the runs already in ``--out`` (refused if that file was made on another CPU).  ``--tiny``: a few
seconds of training per job (the tests run it).

``--lists_seed SEED`` scores both models on other lists instead: the jobs' test voices with new sentences,
pitches and speeds (content seed ``SEED``, as main_job.py's report list), clean and in rooms with noise drawn
for that seed.  Levers are chosen on seed 2028's (the selection lists); 2027's are main_job.py's report seed.
``--reuse`` scores jobs already in ``--work`` again instead of running them (a lever's noisy-reverberant job
beside the clean job of an earlier run, or an earlier run's jobs on other lists):

    python bench/bench_rooms_quality.py --seeds 111 --lists_seed 2028 --reuse --work W --out rooms_select_X.json

``bench/results/rooms_quality.json`` was measured with both configs as they are: chunks side by side
(``hop_size: 50``), AdamW with weight decay 5e-2, each bank room serving 4 epochs (``room_life: 4``) and three
quarters of the noisy job's mixtures dry (``dry_share: 0.75``) and its model a 64-sample window with H=128
(seed 111's two jobs are the selection run's, scored again with ``--reuse``).  ``rooms_select_window32_h64.json``,
``rooms_select_window64_h128.json`` and ``rooms_select_window64_h64.json`` are the selection figures that model was
chosen on; ``rooms_quality_window32.json`` holds the runs before, with mini.yaml's model (a 32-sample window, H=64),
``rooms_quality_lists2027.json`` scores those on new lists (``--lists_seed 2027 --reuse``), and
``rooms_select_dry0.5.json`` / ``rooms_select_dry0.75.json`` are the selection figures the dry share was chosen
on.  ``rooms_quality_dry0.5.json`` holds the runs before,
half of the mixtures dry; ``rooms_quality_room_life1.json`` the ones before, a new bank every epoch;
``rooms_quality_adam_hop25.json`` the ones before, both jobs with half-overlapping chunks and Adam
without decay (and ``rooms_quality_all_wet.json`` the first, every training mixture wet).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from main_job import ISA_ENV, ROOT, TINY_YAML, cpu, job_figures, report_list, run_job, score, spread

CONFIGS = {"clean": "conf/mini.yaml", "noisy_reverb": "conf/mini_noisy_reverb.yaml"}
# the noisy-reverberant recipe's test conditions: as a config's prepare block, and as prepare's options
CONDITIONS = {"reverb": "rooms", "rt60": [0.1, 0.8], "reverb_target": "direct", "noise": "synthetic", "snr": [-5, 15]}
NOISE_AND_ROOMS = "".join(f"  {key}: {json.dumps(value)}\n" for key, value in CONDITIONS.items())
ROOMS_AND_NOISE = [
    word
    for key, value in CONDITIONS.items()
    for word in (f"--{key}", *map(str, value if isinstance(value, list) else [value]))
]


def fresh_lists(folder: Path, env: dict, *, seed: int, tiny: bool) -> dict[str, Path]:
    """The jobs' test voices with new sentences, pitches and speeds (content ``seed``), mixed clean and, with rooms
    and noise drawn for ``seed``, noisy and reverberant: the same pairs in both lists (never a job's test list)."""
    clean = report_list(folder / "clean", env, report_seed=seed, tiny=tiny)
    corpus = folder / "clean" / "corpus"
    rooms = report_list(folder / "noisy_reverb", env, report_seed=seed, tiny=tiny, corpus=corpus,
                        prepare=ROOMS_AND_NOISE)  # fmt: skip
    return {"clean": clean, "noisy_reverb": rooms}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[111, 112, 113], help="training seeds")
    parser.add_argument("--isa", choices=tuple(ISA_ENV), default="native", help="avx2: as on an AVX2-only CPU")
    parser.add_argument("--work", help="where the jobs' experiments go (default: a temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "rooms_quality.json"), help="the JSON")
    parser.add_argument("--tiny", action="store_true", help="tiny jobs (a few seconds of training each)")
    parser.add_argument(
        "--add", action="store_true", help="add these seeds' runs to those already in --out (same CPU and settings)"
    )
    parser.add_argument(
        "--lists_seed", type=int, metavar="SEED", help="score on lists drawn with this content seed instead of the "
        "jobs' own test lists (2028: the selection lists, to choose a lever on; 2027: main_job.py's report seed)"
    )  # fmt: skip
    parser.add_argument("--reuse", action="store_true", help="jobs already done in --work (a job.log and a best.pth) "
                        "are scored again, not run again (a lever's job beside an earlier clean job, say)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.reuse and not args.work:
        parser.error("--reuse scores the jobs in --work: give --work")
    earlier: list[dict] = []
    if args.add and Path(args.out).is_file():
        before = json.loads(Path(args.out).read_text())
        if before["cpu"] != cpu() or any(before.get(k) != getattr(args, k) for k in ("isa", "tiny", "lists_seed")):
            raise SystemExit(f"{args.out}: made on another CPU or with other settings; not adding to it")
        earlier = before["runs"]
        if {r["seed"] for r in earlier} & set(args.seeds):
            raise SystemExit(f"{args.out}: already holds seeds {sorted({r['seed'] for r in earlier})}")
    env = {**os.environ, **ISA_ENV[args.isa]}
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix="rooms_quality-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        configs = {name: ["--config", conf] for name, conf in CONFIGS.items()}
        if args.tiny:  # the main job's tiny config, and the same over mini_noisy_reverb.yaml with its rooms and noise
            conf = ROOT / "egs" / "librispeech" / "dprnn_tasnet" / "conf"
            clean = TINY_YAML.format(mini=conf / "mini.yaml", data=work / "clean")
            noisy = TINY_YAML.format(mini=conf / "mini_noisy_reverb.yaml", data=work / "nr")
            noisy = noisy.replace("  no_progress: true\n", "  no_progress: true\n" + NOISE_AND_ROOMS)
            for name, text in (("clean", clean), ("noisy_reverb", noisy)):
                (work / f"{name}.yaml").write_text(text)
                configs[name] = ["--config", str(work / f"{name}.yaml")]
        fresh = (
            fresh_lists(work / f"lists{args.lists_seed}", env, seed=args.lists_seed, tiny=args.tiny)
            if (args.lists_seed is not None)
            else None
        )
        runs = []
        for seed in args.seeds:
            run = {"seed": seed}
            for name, extra in configs.items():
                job = work / f"seed{seed}-{name}"
                if args.reuse and any(job.rglob("model/best.pth")) and any(job.rglob("eval/*/summary.json")):
                    print(f"rooms_quality: seed {seed}, {name}: the job in {job}", flush=True)
                    run[name] = {**job_figures(seed, job), "reused": True}
                else:
                    print(f"rooms_quality: seed {seed}, {name}", flush=True)
                    run[name] = run_job(seed, job, env, extra)
                own = json.loads(next((job / run[name]["experiment"]).glob("eval/*/summary.json")).read_text())
                run[name]["test_list"] = own["list"]
            lists = fresh or {
                name: Path(run[name]["test_list"]).parents[1] for name in configs
            }  # <dataset_dir>/<n>mix/test.json
            for model in configs:
                for test, dataset in lists.items():
                    suffix = "" if fresh is None else f"-lists{args.lists_seed}"
                    out = work / f"seed{seed}-{model}-on-{test}{suffix}"
                    # one reference for both models: the direct path (the noisy-reverberant recipe's target)
                    run[f"{model}_on_{test}"] = score(
                        run[model]["best"], dataset, out, env, "--reverb_target", "direct"
                    )
                    print(f"  {model} model on the {test} list: {run[f'{model}_on_{test}']}", flush=True)
            for name in configs:
                run[name].pop("best")
            runs.append(run)
    runs = earlier + runs
    table = {
        f"{model}_on_{test}": spread([r[f"{model}_on_{test}"]["si_sdri"] for r in runs])
        for model in CONFIGS
        for test in CONFIGS
    }
    gain = [r["noisy_reverb_on_noisy_reverb"]["si_sdri"] - r["clean_on_noisy_reverb"]["si_sdri"] for r in runs]
    cost = [r["clean_on_clean"]["si_sdri"] - r["noisy_reverb_on_clean"]["si_sdri"] for r in runs]
    result = {
        "what": "the mini DPRNN trained on clean mixtures and on noisy reverberant ones (conf/mini.yaml, "
        "conf/mini_noisy_reverb.yaml, whole main jobs), each scored on a clean list and on a noisy-reverberant one "
        "(bench/bench_rooms_quality.py)",
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu(),
        "isa": args.isa,
        "tiny": args.tiny,
        "lists_seed": args.lists_seed,
        "lists": "the jobs' own test lists"
        if fresh is None
        else f"new lists of the test voices, content seed {args.lists_seed}",
        "seeds": [r["seed"] for r in runs],
        "si_sdri": table,
        "noisy_reverb_gain_on_noisy_reverb_db": spread(gain),
        "clean_cost_db": spread(cost),
        "target_met": {"gain_at_least_3_db": min(gain) >= 3.0, "within_1_db_on_clean": max(cost) <= 1.0},
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp_out, out)
    print("SI-SDRi (dB), mean (std) over seeds:")
    for key, value in table.items():
        print(f"  {key:32s} {value['mean']:6.2f} ({value['std']})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
