"""Time to a working separator: dnnsep's recipe against asteroid 0.7's DPRNN-TasNet, on held-out voices.

Every *arm* trains on the same prepared lists under the same wall-clock budget:

- dnnsep arms: the recipe's trainer (:func:`dnnsep.training.trainer.Trainer`, validation and
  checkpoints included in its time) with ``--config`` plus each arm's overrides (``--arm NAME:key=value,...``),
  so levers are measured side by side;
- the ``asteroid`` arm (when asteroid imports): ``asteroid.models.DPRNNTasNet`` of the same sizes (the
  first arm's model options), ``PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")``, Adam at the
  same lr, batch size, segment and gradient clipping, the prepared (static) training mixtures in a new
  random order every epoch, a constant learning rate, no validation.

Fairness: training runs in slices of ``--slice`` seconds, every slice a fresh process (state saved
between slices: dnnsep's ``last.pth``, resumed mid-epoch; the asteroid arm's own state file), arms in
turn, the order rotated every round, so a busy machine slows every arm alike; every process gets the
same ``--threads`` (1 by default: on a 2-core machine shared with other jobs, two OpenMP threads spin
against each other and a step can take 10x longer).  An arm stops at its first step after the slice
ends, and its measured seconds (training only: not process start-up or scoring) are what the curve
shows.  After every slice each arm's current weights are scored on the test list (the speakers the
``prepare`` subsets hold out: voices never heard in training) with an SI-SDRi computed here, in
float64 NumPy, independently of the training code (permutation chosen by the mean SI-SDR).

``--held_out DIR`` (a prepared dataset_dir) scores every slice on its test list too: the voices of a
synthesiser no arm trained on (festival's, beside a corpus of espeak-ng voices), which
tells whether a model learnt voices or its engines' sound.

Reports: SI-SDRi at equal time (every curve read at the shortest arm's total time) and at equal steps
(read at the fewest steps), on the test list and on the held-out list, a learning curve PNG (SI-SDRi
against training seconds, every arm on one plot) and ``results.json``.

``--tiny`` (< 60 s; used by tests/test_bench_quality.py) makes its own small corpus and a tiny model;
without asteroid installed it scores dnnsep alone and says so.  To include asteroid, install it into a
scratch venv that sees this one (it is never a dependency of dnnsep) and run the bench with that python::

    python3 -m venv --system-site-packages /tmp/astvenv
    /tmp/astvenv/bin/pip install --no-deps asteroid==0.7.0 asteroid-filterbanks==0.4.0
    /tmp/astvenv/bin/pip install scipy huggingface_hub   # (plus any import asteroid asks for)
    PYTHONPATH=src /tmp/astvenv/bin/python bench/bench_quality.py --data DATASET_DIR --budget 600
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "egs" / "librispeech" / "dprnn_tasnet"
TINY_MODEL = {"n_filters": 16, "kernel_size": 8, "hidden": 16, "chunk_size": 20, "hop_size": 10, "n_blocks": 1}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(RECIPE / "conf" / "mini.yaml"), help="the recipe config of every arm")
    p.add_argument("--data", help="a prepared dataset_dir (<n>mix/{train,valid,test}.json); default: the config's")
    p.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="a dnnsep arm: a name and overrides of --config (repeat for several; default: one arm 'dnnsep')",
    )
    p.add_argument("--asteroid", choices=("auto", "yes", "no"), default="auto", help="add the asteroid arm")
    p.add_argument("--budget", type=float, default=300.0, help="training seconds per arm")
    p.add_argument("--slice", type=float, default=60.0, help="seconds of one slice")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every process")
    p.add_argument("--n_eval", type=int, default=60, help="test mixtures scored after every slice (0: all)")
    p.add_argument("--held_out", metavar="DIR", help="a prepared dataset_dir whose test list is also scored: "
                   "voices of an engine held out of training")  # fmt: skip
    p.add_argument("--out", default="bench_quality_out", help="output folder (experiments, results, PNG)")
    p.add_argument("--tiny", action="store_true", help="a < 60 s run on its own tiny corpus (a smoke test)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one slice or one scoring, from JSON
    return p


# -- the arms' training, each slice in its own process ------------------------------------------


def dnnsep_slice(spec: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) one dnnsep arm for ``spec['seconds']``; returns its seconds and steps so far."""
    from dnnsep.training.config import load_config
    from dnnsep.training.trainer import Trainer

    cfg = load_config(spec["config"], {**spec["overrides"], "dataset_dir": spec["data"], "num_workers": 0})
    out = Path(spec["dir"])
    last = next(out.rglob("last.pth"), None) if out.is_dir() else None
    trainer = Trainer(cfg, out, resume=last)
    start = time.perf_counter()
    summary = trainer.fit(max_seconds=spec["seconds"])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "steps": trainer.progress.global_step, "checkpoint": str(trainer.last_path),
            "done": summary["stopped"] is not None}  # fmt: skip


def asteroid_model(model_options: dict[str, Any], n_sources: int, sample_rate: int):
    """asteroid's DPRNNTasNet of the same sizes as dnnsep's ``model_options`` (a resolved DPRNN config)."""
    from asteroid.models import DPRNNTasNet

    m = model_options
    return DPRNNTasNet(
        n_sources,
        n_filters=m["n_filters"],
        kernel_size=m["kernel_size"],
        stride=m["stride"],
        bn_chan=m["bottleneck"],
        hid_size=m["hidden"] // 2,  # asteroid's is per direction
        chunk_size=m["chunk_size"],
        hop_size=m["hop_size"],
        n_repeats=m["n_blocks"],
        norm_type="gLN",
        mask_act="sigmoid",
        bidirectional=True,
        rnn_type="LSTM",
        num_layers=1,
        sample_rate=sample_rate,
    )


def asteroid_slice(spec: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) the asteroid arm for ``spec['seconds']`` with asteroid's model and PIT loss."""
    import torch
    from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr

    from dnnsep.data import MixtureDataset, list_path
    from dnnsep.training.config import load_config

    cfg = load_config(spec["config"], {**spec["overrides"], "dataset_dir": spec["data"]})
    if cfg.model["name"] != "dprnn_tasnet":
        raise SystemExit(f"the asteroid arm is a DPRNN-TasNet; the first arm's model is {cfg.model['name']}")
    data = MixtureDataset(list_path(spec["data"], cfg.n_sources, "train"), segment_seconds=cfg.segment_seconds)
    torch.manual_seed(cfg.seed)
    model = asteroid_model(cfg.model, cfg.n_sources, cfg.sample_rate)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_func = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
    path = Path(spec["dir"]) / "state.pth"
    state = {"epoch": 0, "step": 0, "global_step": 0}
    if path.exists():
        saved = torch.load(path, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["progress"]
    model.train()
    n_batches = len(data) // cfg.batch_size
    start = time.perf_counter()
    while time.perf_counter() - start < spec["seconds"]:
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed * 1000 + state["epoch"]))
        i = state["step"]
        items = [data[int(j)] for j in order[i * cfg.batch_size : (i + 1) * cfg.batch_size]]
        mixture, sources = torch.stack([m for m, _ in items]), torch.stack([s for _, s in items])
        loss = loss_func(model(mixture), sources)
        optimizer.zero_grad()
        loss.backward()
        if cfg.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        optimizer.step()
        state["step"] += 1
        state["global_step"] += 1
        if state["step"] == n_batches:
            state["epoch"], state["step"] = state["epoch"] + 1, 0
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "progress": state}, path)
    return {"seconds": seconds, "steps": state["global_step"], "checkpoint": str(path), "done": False}


# -- scoring, independent of the training code ---------------------------------------------------


def si_sdr64(estimate: np.ndarray, target: np.ndarray) -> float:
    """SI-SDR in dB from its definition, float64: zero-mean signals, the target scaled by projection."""
    e = np.asarray(estimate, np.float64) - np.mean(estimate)
    s = np.asarray(target, np.float64) - np.mean(target)
    scaled = np.dot(e, s) / max(np.dot(s, s), 1e-20) * s
    return float(10 * np.log10(max(np.sum(scaled**2), 1e-20) / max(np.sum((e - scaled) ** 2), 1e-20)))


def si_sdri64(estimates: np.ndarray, sources: np.ndarray, mixture: np.ndarray) -> float:
    """Mean SI-SDR improvement over the sources under the best permutation (by mean SI-SDR), in dB.

    Shape: estimates (n, time), sources (n, time), mixture (time,) -> a float.
    """
    from itertools import permutations

    n = len(sources)
    pair = np.array([[si_sdr64(estimates[i], sources[j]) for j in range(n)] for i in range(n)])  # (est, src)
    best = max(np.mean([pair[p[j], j] for j in range(n)]) for p in permutations(range(n)))
    return float(best - np.mean([si_sdr64(mixture, sources[j]) for j in range(n)]))


def score(spec: dict[str, Any]) -> dict[str, dict[str, float]]:
    """SI-SDRi of every checkpoint in ``spec['checkpoints']`` ({arm: (kind, path)}) on the test list of each
    dataset_dir in ``spec['lists']`` ({name: dir}): {arm: {name: dB}}."""
    import torch

    from dnnsep.data import MixtureDataset, list_path
    from dnnsep.training.config import load_config

    cfg = load_config(spec["config"], {**spec["overrides"], "dataset_dir": spec["data"]})
    tests = {name: MixtureDataset(list_path(folder, cfg.n_sources, "test")) for name, folder in spec["lists"].items()}
    results: dict[str, dict[str, float]] = {}
    for arm, (kind, path) in spec["checkpoints"].items():
        if kind == "asteroid":
            model = asteroid_model(cfg.model, cfg.n_sources, cfg.sample_rate)
            model.load_state_dict(torch.load(path, weights_only=True)["model"])
        else:
            from dnnsep.models import load

            model = load(path)
        model.eval()
        results[arm] = {}
        for name, test in tests.items():
            scores = []
            with torch.inference_mode():
                for i in range(len(test)) if not spec["n_eval"] else range(min(spec["n_eval"], len(test))):
                    mixture, sources = test[i]
                    estimates = model(mixture[None])[0]  # (n_sources, time)
                    scores.append(
                        si_sdri64(estimates.double().numpy(), sources.double().numpy(), mixture.double().numpy())
                    )
            results[arm][name] = float(np.mean(scores))
    return results


# -- the driver ----------------------------------------------------------------------------------


def run_worker(kind: str, spec: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run ``--worker kind`` in a fresh process (same python, ``threads`` threads); its JSON answer."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else src
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind]
    done = subprocess.run(cmd, input=json.dumps(spec), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_arm(text: str) -> tuple[str, dict[str, Any]]:
    """``'dm:dynamic_mixing=true,lr=1e-3'`` -> ``('dm', {'dynamic_mixing': True, 'lr': 0.001})``."""
    from dnnsep.training.config import parse_value

    name, _, rest = text.partition(":")
    overrides: dict[str, Any] = {}
    model = None
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key in ("model", "model.name"):
            model = value
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = parse_value(key, value, model=model)
    if not name or name == "asteroid":
        raise SystemExit(f"--arm {text}: give a name other than 'asteroid' before the colon")
    return name, overrides


def interpolate(points: list[dict[str, float]], key: str, at: float, value: str = "si_sdri") -> float:
    """The ``value`` of a curve of ``{key, value}`` points read at ``key == at`` (linear; 0 dB at 0)."""
    xs = [0.0] + [p[key] for p in points]
    ys = [0.0] + [p[value] for p in points]
    return float(np.interp(at, xs, ys))


def plot(curves: dict[str, list[dict[str, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, points in curves.items():
        ax.plot([0] + [p["seconds"] for p in points], [0] + [p["si_sdri"] for p in points], marker="o", label=arm)
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel("SI-SDRi on held-out speakers (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tiny_data(out: Path) -> tuple[str, str, list[str]]:
    """A tiny corpus and its lists under ``out`` (the recipes' voices: espeak-ng), and a held-out list
    of festival voices; returns (dataset_dir, held-out dataset_dir, arms)."""
    from dnnsep.bin import prepare
    from dnnsep.data.tts import make_offline_corpus

    for name, options in (("data", {}), ("held_out", {"engine": "festival", "avoid": ("espeak", "flite"),
                                                       "subsets": ("test-clean",)})):  # fmt: skip
        corpus, data = out / f"{name}-corpus", out / name
        if not (data / "2mix" / "test.json").exists():
            made = make_offline_corpus(corpus, **{"n_speakers": 4, "utts_per_speaker": 3, "seconds": (1.5, 2.5),
                                                  "seed": 0, **options})  # fmt: skip
            subsets = ["--subsets", "test-clean", "test-clean", "test-clean"] if options else []
            argv = [str(data), "2", "--librispeech_root", str(made.path), "--segment", "1", "--eval_segment", "1",
                    "--n_train", "16", "--n_valid", "4", "--n_test", "6", "--no_progress", *subsets]  # fmt: skip
            if prepare.main(argv) != 0:
                raise SystemExit("prepare failed")
    model = ",".join(f"model.{k}={v}" for k, v in TINY_MODEL.items())
    arms = [f"dnnsep:{model},batch_size=2,epochs=50,lr_patience=0,early_stop_patience=0"]
    return str(out / "data"), str(out / "held_out"), arms


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.worker:
        spec = json.loads(sys.stdin.read())
        import torch

        torch.set_num_threads(spec["threads"])
        work = {"dnnsep": dnnsep_slice, "asteroid": asteroid_slice, "score": score}[args.worker]
        print(json.dumps(work(spec)))
        return 0

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    arms_text = args.arm
    if args.tiny:
        data, args.held_out, arms_text = tiny_data(out)
        args.budget, args.slice, args.n_eval = 6.0, 3.0, 6
    else:
        from dnnsep.training.config import load_config

        data = os.path.abspath(args.data) if args.data else load_config(args.config).dataset_dir
    arms = dict(parse_arm(a) for a in (arms_text or ["dnnsep:"]))
    try:
        import asteroid  # noqa: F401

        have_asteroid = True
    except ImportError:
        have_asteroid = False
    if args.asteroid == "yes" and not have_asteroid:
        raise SystemExit("--asteroid yes: asteroid does not import in this python (see this file's docstring)")
    first = next(iter(arms.values()))
    kinds = {name: "dnnsep" for name in arms}
    if have_asteroid and args.asteroid != "no":
        kinds["asteroid"] = "asteroid"
        arms["asteroid"] = first
    else:
        print("asteroid is not installed here: scoring dnnsep alone (see the docstring to compare)")
    common = {"config": os.path.abspath(args.config), "data": data, "threads": args.threads}
    lists = {"test": data, **({"held_out": os.path.abspath(args.held_out)} if args.held_out else {})}
    curves: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    used = {name: 0.0 for name in arms}
    checkpoints: dict[str, tuple[str, str]] = {}
    load = []
    names = list(arms)
    for round_ in range(math.ceil(args.budget / args.slice - 1e-9)):
        load.append(os.getloadavg()[0])
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # rotated every round
            seconds = min(args.slice, args.budget - used[name])
            if seconds <= 0:
                continue
            spec = {**common, "overrides": arms[name], "dir": str(out / name), "seconds": seconds}
            done = run_worker(kinds[name], spec, args.threads)
            used[name] += done["seconds"]
            checkpoints[name] = (kinds[name], done["checkpoint"])
            curves[name].append({"seconds": used[name], "steps": done["steps"]})
        spec = {**common, "overrides": first, "checkpoints": checkpoints, "n_eval": args.n_eval, "lists": lists}
        scores = run_worker("score", spec, args.threads)
        line = []
        for name, values in scores.items():
            if len(curves[name]) and "si_sdri" not in curves[name][-1]:
                curves[name][-1]["si_sdri"] = values["test"]
                if "held_out" in values:
                    curves[name][-1]["si_sdri_held_out"] = values["held_out"]
            held = f", held-out {values['held_out']:.2f} dB" if "held_out" in values else ""
            line.append(f"{name} {values['test']:.2f} dB{held} ({used[name]:.0f} s, {curves[name][-1]['steps']} steps)")
        print(f"round {round_ + 1}: " + "; ".join(line) + f"  [load {load[-1]:.1f}]", flush=True)

    if str(HERE) not in sys.path:  # imported from elsewhere (the tests)
        sys.path.insert(0, str(HERE))
    from main_job import cpu  # this folder's: the CPU's model and vector flags

    equal_time = min(used.values())
    equal_steps = min(c[-1]["steps"] for c in curves.values())
    summary = {
        name: {
            "final_si_sdri": curves[name][-1]["si_sdri"],
            "seconds": used[name],
            "steps": curves[name][-1]["steps"],
            "at_equal_time": interpolate(curves[name], "seconds", equal_time),
            "at_equal_steps": interpolate(curves[name], "steps", equal_steps),
            **(
                {
                    "held_out_final": curves[name][-1]["si_sdri_held_out"],
                    "held_out_at_equal_time": interpolate(curves[name], "seconds", equal_time, "si_sdri_held_out"),
                    "held_out_at_equal_steps": interpolate(curves[name], "steps", equal_steps, "si_sdri_held_out"),
                }
                if args.held_out
                else {}
            ),
            "overrides": arms[name],
        }
        for name in arms
    }
    results = {"config": args.config, "data": data, "held_out": args.held_out, "threads": args.threads,
               "slice": args.slice, "date": time.strftime("%Y-%m-%d"), "cpu": cpu(),
               "equal_time_s": equal_time, "equal_steps": equal_steps, "load_average": load,
               "asteroid": "asteroid" in arms, "summary": summary, "curves": curves}  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=1))
    title = f"{Path(args.config).name} on {Path(data).name}, {args.threads} thread(s), slices of {args.slice:g} s"
    plot(curves, out / "curve.png", title)
    print(f"\n{'arm':<14}{'SI-SDRi @ ' + format(equal_time, '.0f') + ' s':>16}"
          f"{'@ ' + str(equal_steps) + ' steps':>16}{'steps':>8}{'seconds':>9}")  # fmt: skip
    for name, s in summary.items():
        print(
            f"{name:<14}{s['at_equal_time']:>14.2f}dB{s['at_equal_steps']:>14.2f}dB{s['steps']:>8}{s['seconds']:>9.0f}"
        )
        if args.held_out:
            print(f"{'  held-out':<14}{s['held_out_at_equal_time']:>14.2f}dB{s['held_out_at_equal_steps']:>14.2f}dB")
    if "asteroid" not in arms:
        print("(dnnsep alone: asteroid not installed)")
    print(f"wrote {out / 'results.json'} and {out / 'curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
