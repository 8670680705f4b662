"""A long file through a published SepFormer: dnnsep's long-file path against SpeechBrain's whole-file pass.

    /tmp/astvenv/bin/python bench/bench_long_file.py [--minutes 10] [--json bench/results/long_file_sepformer.json]

The model is SepFormer as SpeechBrain publishes it (``bench_model.py``'s ``wsj02mix``: 8 kHz, random
weights; time does not depend on them).  In a fresh process each, on ``--threads`` threads:

- dnnsep: :func:`dnnsep.inference.separate_long` (what ``separate.sh`` runs: 8 s chunks, 25% overlap,
  the voices kept in order from chunk to chunk), its time and peak memory;
- SpeechBrain: its ``separate_batch`` on the whole file at once (what ``separate_file`` does), its
  time and peak memory, or how it ended (out of memory: the inter-chunk attention over every chunk
  of the file at once; or ``--limit_s`` passed).

Each pass runs under an address-space limit (``--memory_gb``, default 90% of the machine's memory;
recorded with its result), so a pass that needs more fails in its own process with the allocator's
message (how much it asked for) instead of being killed by the kernel.  (An address-space limit suits
the CPU: a CUDA process maps far more address space than it uses.)  ``--kinds speechbrain --update``
runs one arm and keeps the other's result in the JSON (same CPU only).

``--tiny``: a few seconds of a tiny SepFormer (the tests run it; SpeechBrain timed only if importable).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def child(kind: str, args: argparse.Namespace) -> dict:
    """In this process: one pass of ``kind`` over the file; time and peak memory (MB)."""
    from bench_model import CONFIGS, build

    torch.set_num_threads(args.threads)
    limit = int(args.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    config = CONFIGS["sepformer"]["tiny" if args.tiny else "wsj02mix"]
    model = build("speechbrain" if kind == "speechbrain" else "ours", config)
    x = torch.randn(1, int(args.minutes * 60 * config.sample_rate)) * 0.1
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            if kind == "speechbrain":
                y = model(x)
            else:
                from dnnsep.inference import separate_long

                y = separate_long(model, x[0], sample_rate=config.sample_rate, chunk_seconds=8.0, overlap=0.25)
        outcome = f"separated, output {tuple(y.shape)}"
    except (RuntimeError, MemoryError) as err:  # torch's allocator: "not enough memory", "can't allocate"
        outcome = "failed: " + str(err).strip().splitlines()[0][:160]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)
    return {"seconds": round(seconds, 1), "peak_mb": round(peak), "outcome": outcome}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit_s", type=float, default=3600, help="give a pass up after this many seconds")
    parser.add_argument("--memory_gb", type=float, default=round(0.9 * _memory_gb(), 1),
                        help="address-space limit of each pass (default: 90%% of this machine's memory)")  # fmt: skip
    parser.add_argument("--kinds", default="ours,speechbrain", help="which passes (speechbrain: if importable)")
    parser.add_argument("--update", action="store_true", help="keep the --json file's other passes (same CPU)")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0
    from bench_model import has_speechbrain
    from main_job import cpu

    wanted = [k for k in args.kinds.split(",") if k]
    if any(k not in ("ours", "speechbrain") for k in wanted):
        parser.error(f"--kinds takes ours and/or speechbrain, got {args.kinds!r}")
    kinds = [k for k in wanted if k == "ours" or has_speechbrain()]
    results = {}
    if args.update and args.json and Path(args.json).is_file():
        old = json.loads(Path(args.json).read_text())
        options = (args.minutes, args.threads, args.tiny)
        if old.get("cpu") != cpu() or (old["minutes"], old["threads"], old["tiny"]) != options:
            parser.error(f"{args.json}: measured on another CPU or with other options; run every pass instead")
        results = old["results"]
    for kind in kinds:
        command = [sys.executable, __file__, "--child", kind, "--minutes", str(args.minutes), "--threads",
                   str(args.threads), "--memory_gb", str(args.memory_gb)]  # fmt: skip
        command += ["--tiny"] if args.tiny else []
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.limit_s)
            if done.returncode == 0:
                results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
            else:  # crashed, or killed (-9: the kernel's OOM killer)
                tail = (done.stderr.strip().splitlines() or ["?"])[-1][:160]
                seconds = round(time.perf_counter() - start, 1)
                results[kind] = {"seconds": seconds, "outcome": f"exit {done.returncode}: {tail}"}
        except subprocess.TimeoutExpired:
            results[kind] = {"outcome": f"gave up after {args.limit_s:g} s"}
        results[kind]["memory_limit_gb"] = args.memory_gb  # each pass's own (an --update keeps the others')
        print(f"{kind:12s} {results[kind]}", flush=True)
    if args.json:
        out = {"minutes": args.minutes, "threads": args.threads, "tiny": args.tiny, "cpu": cpu(),
               "torch": torch.__version__, "results": results}  # fmt: skip
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


def _memory_gb() -> float:
    """This machine's memory in GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


if __name__ == "__main__":
    sys.exit(main())
