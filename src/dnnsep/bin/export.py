"""Export a trained model for deployment:  python -m dnnsep.bin.export --format onnx|torchscript [--model PATH]

Both formats take ``mixture (batch, time)`` float32 and return ``sources (batch, n_sources, time)``
for any batch size and length.  The exported file is checked before it is kept: it is run by
onnxruntime (ONNX) or TorchScript on inputs of two batch sizes and lengths, and its outputs must
match the PyTorch model's within ``--tolerance`` (1e-4); otherwise nothing is written.  NaN or
infinite outputs fail the check.  The file is serialised in memory, its size checked against the
free space, then written to a temporary beside ``--output`` and renamed: a full or read-only disk
is a one-line error, and a killed export leaves the previous file as it was (the temporary it
leaves is removed by the next export to that folder).

- ``onnx`` needs the optional packages ``onnx``, ``onnxscript`` (torch's exporter) and
  ``onnxruntime`` (the check): ``pip install 'dnnsep[export]'``.  Export takes about a minute.
- ``torchscript`` needs nothing more; load the file with ``torch.jit.load(path)``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import shutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_write, remove_stale_temporaries
from ..cli import check_number, need_directory, os_error, prog, run
from ..errors import DnnsepError
from ..pretrained import add_model_options, load_model

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
INPUT_NAME, OUTPUT_NAME = "mixture", "sources"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("python -m dnnsep.bin.export"),
        description="Export a separation model to ONNX or TorchScript, checked against PyTorch.",
        allow_abbrev=False,
    )
    parser.add_argument("--format", required=True, choices=tuple(SUFFIXES), help="onnx or torchscript")
    add_model_options(parser, device=False)
    parser.add_argument("--output", metavar="PATH", help="where to write (default: beside the model, new suffix)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of the check inputs (default 1)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed output difference (1e-4)")
    return parser


def example_input(config, *, seed: int = 0) -> torch.Tensor:
    """A short input (a few dual-path chunks, or 100 frames for a model without chunks): what the exporters trace.

    Tracing time grows with the example's length (about a minute for the default DPRNN at this
    length); the dynamic axes are then checked on longer inputs by :func:`check_inputs`.

    Shape: (2, stride * frames + kernel_size), frames = 4 * hop_size (DPRNN) or 100.
    """
    gen = torch.Generator().manual_seed(seed)
    frames = 4 * getattr(config, "hop_size", 25)
    return 0.1 * torch.randn(2, config.stride * frames + config.kernel_size, generator=gen)


def check_inputs(sample_rate: int, seconds: float, *, seed: int = 1) -> list[torch.Tensor]:
    """Speech-level noise (RMS 0.1) of two batch sizes and lengths, to compare the exported model with PyTorch.

    Shape: [(2, time), (1, time * 1.37 + 1)].
    """
    gen = torch.Generator().manual_seed(seed)
    n = max(16, int(seconds * sample_rate))
    return [0.1 * torch.randn(2, n, generator=gen), 0.1 * torch.randn(1, int(n * 1.37) + 1, generator=gen)]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run on one intra-op thread: work the model hands to helper threads would escape the tracer,
    and a traced LSTM split over several threads can be very slow on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def export_torchscript(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """Trace the model (shapes are traced, so any batch and length work); returns the saved file's bytes.

    Saved in memory: torch's own file writer aborts the process (``c10::Error``) on a full disk.
    """
    with warnings.catch_warnings(), torch.no_grad(), _one_thread():
        warnings.simplefilter("ignore")  # tracer notes on shape arithmetic; the outputs are checked below
        traced = torch.jit.trace(model, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def run_torchscript(path: str, x: torch.Tensor) -> np.ndarray:
    with warnings.catch_warnings(), torch.no_grad(), _one_thread():  # LSTM steps on a busy machine: see _one_thread
        warnings.simplefilter("ignore")
        return torch.jit.load(path, map_location="cpu")(x).numpy()


def export_onnx(model: torch.nn.Module, example: torch.Tensor, *, opset: int) -> bytes:
    """torch.export with automatic dynamic batch and time axes, then the ONNX translation; returns the file's bytes."""
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise DnnsepError(f"ONNX export needs {', '.join(missing)}: pip install 'dnnsep[export]'")
    if not hasattr(torch.export.Dim, "AUTO"):
        raise DnnsepError(
            f"ONNX export needs torch.export's automatic dynamic shapes (torch 2.6 or later), but torch is "
            f"{torch.__version__}: pip install -U 'torch>=2.6', or export --format torchscript"
        )
    auto = torch.export.Dim.AUTO  # dynamic where the model allows it (batch and time, checked below)
    with warnings.catch_warnings(), _one_thread():
        warnings.simplefilter("ignore")
        try:
            exported = torch.export.export(model, (example,), dynamic_shapes=({0: auto, 1: auto},), strict=False)
            program = torch.onnx.export(
                exported,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                optimize=False,
                verbose=False,
            )
        except Exception as err:  # the exporter's errors are long; keep the first line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DnnsepError(f"ONNX export failed: {first[:300]}") from None
    return program.model_proto.SerializeToString()  # weights inside the file (a small model: well below 2 GB)


def free_bytes(folder: Path) -> int:
    """Free space in ``folder`` (a function of its own, so tests can pretend a disk has room)."""
    return shutil.disk_usage(folder).free


def write_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through Python's file object, so a full disk is a plain ``OSError``."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()


def compare(got: np.ndarray, expected: np.ndarray, x: torch.Tensor, model_path: Path) -> float:
    """The largest absolute difference between the exported and the PyTorch outputs for input ``x``.

    NaN or infinity on either side fails (a NaN difference would otherwise compare as 0).
    """
    if got.shape != expected.shape:
        raise DnnsepError(f"exported model gives shape {got.shape} for input {tuple(x.shape)}, not {expected.shape}")
    if not np.isfinite(expected).all():
        raise DnnsepError(
            f"{model_path}: the PyTorch model itself gives NaN or infinite outputs for input {tuple(x.shape)}; "
            "nothing written"
        )
    if not np.isfinite(got).all():
        raise DnnsepError(f"exported model gives NaN or infinite outputs for input {tuple(x.shape)}; nothing written")
    return float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max(initial=0.0))


def run_onnx(path: str, x: torch.Tensor) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    check_number("--seconds", args.seconds, low=0, high=600, low_open=True)
    check_number("--tolerance", args.tolerance, low=0, high=1)
    if not 7 <= args.opset <= 99:
        raise DnnsepError(f"--opset must be an ONNX opset version (7 to 99), got {args.opset}")
    model, model_path = load_model(args.model, recipe_dir=args.recipe_dir, device=torch.device("cpu"))
    output = Path(args.output).expanduser() if args.output else model_path.with_suffix(SUFFIXES[args.format])
    if output.is_dir():
        raise DnnsepError(f"{output}: is a directory; pass --output PATH/TO/FILE{SUFFIXES[args.format]}")
    folder = need_directory(output.parent, what="the --output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise os_error(err, folder) from None
    if not os.access(folder, os.W_OK):  # before the export, which takes a while
        readonly = hasattr(os, "statvfs") and os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 0)
        reason = "read-only file system" if readonly else "permission denied"
        raise DnnsepError(f"{folder}: {reason}; choose another --output")
    remove_stale_temporaries(folder)
    example = example_input(model.config)
    inputs = [example, *check_inputs(model.sample_rate, args.seconds)]
    if args.format == "onnx":
        data, runner = export_onnx(model, example, opset=args.opset), run_onnx
    else:
        data, runner = export_torchscript(model, example), run_torchscript
    free = free_bytes(folder)
    if free < len(data) + (1 << 16):
        raise DnnsepError(
            f"{folder}: not enough free space for the {len(data) / 1024**2:.2f} MiB export "
            f"({free / 1024**2:.2f} MiB free); free some space or choose another --output"
        )
    worst = 0.0

    def write_and_check(tmp: str) -> None:
        """Write the export to ``tmp`` and compare it with PyTorch; raising leaves nothing behind."""
        nonlocal worst
        write_file(tmp, data)
        for x in inputs:
            with torch.no_grad():
                expected = model(x).numpy()
            try:
                got = runner(tmp, x)
            except Exception as err:
                first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
                raise DnnsepError(
                    f"exported model fails on input {tuple(x.shape)}: {first[:300]}; nothing written"
                ) from None
            worst = max(worst, compare(got, expected, x, model_path))
        if not worst <= args.tolerance:
            raise DnnsepError(
                f"exported model differs from PyTorch by {worst:.2e} > {args.tolerance:g}; nothing written"
            )

    try:
        atomic_write(output, write_and_check)  # temporary file, then a rename: never half an export
    except OSError as err:  # full or read-only disk: atomic_write has removed its temporary
        raise os_error(err, output) from None
    print(f"Wrote {output} ({args.format}; largest difference from PyTorch {worst:.1e})", file=sys.stderr)
    print(output)
    return 0


if __name__ == "__main__":
    run(main)
