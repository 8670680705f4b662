"""Train DPRNN-TasNet:  python -m dnnsep.bin.train --config conf/default.yaml [--key value ...] OUT_DIR [MODEL_PATH]

Every key of the config file can be overridden as ``--key value`` (``null`` for "unset").  The
experiment directory is made under OUT_DIR from the options (see ``dnnsep.training.experiment_dir``);
MODEL_PATH, a ``model/last.pth``, continues a run exactly where it stopped.  Under
``torchrun --nproc_per_node N -m dnnsep.bin.train ...`` it trains on N processes (GPUs).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from ..cli import run
from ..errors import DnnsepError
from ..training.config import TrainConfig, experiment_dir, load_config, parse_value, prepare_args, value_type_name


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dnnsep.bin.train",
        description="Train a DPRNN-TasNet separation model on prepared mixture lists.",
        allow_abbrev=False,
    )
    parser.add_argument("out_dir", nargs="?", metavar="OUT_DIR", help="experiments are made under this directory")
    parser.add_argument(
        "model_path", nargs="?", metavar="MODEL_PATH", help="a model/last.pth to continue from (same options)"
    )
    parser.add_argument(
        "--config",
        required=True,
        metavar="FILE",
        help="YAML file with every option (e.g. egs/librispeech/dprnn_tasnet/conf/default.yaml)",
    )
    parser.add_argument(
        "--get",
        metavar="KEY[,KEY...]",
        help="print the resolved value of KEY (a config key, experiment_dir, or prepare_args), one per line, and "
        "exit; several keys: KEY,KEY,...",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check (config, data lists, experiment directory, MODEL_PATH) and exit; "
        "train.sh does this before starting several processes",
    )
    options = parser.add_argument_group("config overrides (defaults: the --config file)")
    for field in TrainConfig.__dataclass_fields__.values():
        help_text = field.metadata["help"]
        if field.metadata["choices"]:
            help_text += f" ({' | '.join(field.metadata['choices'])})"
        options.add_argument(
            f"--{field.name}", default=argparse.SUPPRESS, metavar=value_type_name(field.name), help=help_text
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    overrides = {key: parse_value(key, getattr(args, key)) for key in TrainConfig.keys() if hasattr(args, key)}
    if overrides.get("dataset_dir"):
        overrides["dataset_dir"] = os.path.abspath(os.path.expanduser(overrides["dataset_dir"]))
    cfg = load_config(args.config, overrides)
    if args.get is not None:
        print("\n".join(_values(cfg, args.get.split(","), args.config, args.out_dir)))
        return 0
    if args.out_dir is None:
        raise DnnsepError("OUT_DIR is missing: python -m dnnsep.bin.train --config FILE OUT_DIR [MODEL_PATH]")
    from ..training.trainer import preflight, train  # imports torch's heavier parts only when training

    if args.check:
        print(f"ok: {preflight(cfg, args.out_dir, args.model_path)}")
        return 0
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone reports an error
        try:
            train(cfg, args.out_dir, resume=args.model_path)
        except DnnsepError:
            return 2
        return 0
    train(cfg, args.out_dir, resume=args.model_path)
    return 0


def _values(cfg: TrainConfig, keys: list[str], config: str, out_dir: str | None) -> list[str]:
    """Text lines of ``--get KEY[,KEY...]``: one per value; ``prepare_args`` gives one line per argument."""
    lines = []
    for key in keys:
        if key == "prepare_args":
            lines.extend(prepare_args(config))
        elif key == "experiment_dir":
            if out_dir is None:
                raise DnnsepError("--get experiment_dir needs OUT_DIR")
            lines.append(str(experiment_dir(cfg, out_dir)))
        elif key in TrainConfig.keys():
            value = getattr(cfg, key)
            lines.append("null" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
        else:
            raise DnnsepError(f"--get {key}: not a config key, experiment_dir or prepare_args")
    return lines


if __name__ == "__main__":
    run(main)
