"""Train a model:  python -m dnnsep.bin.train --config conf/default.yaml [--key value ...] OUT_DIR [MODEL_PATH]

Every key of the config file can be overridden as ``--key value`` (``null`` for "unset"); the
model's options as ``--model.<option> value`` (or ``--<option> value``), the model itself as
``--model.name NAME``.  The
experiment directory is made under OUT_DIR from the options (see ``dnnsep.training.experiment_dir``);
MODEL_PATH, a ``model/last.pth``, continues a run exactly where it stopped.  Under
``torchrun --nproc_per_node N -m dnnsep.bin.train ...`` it trains on N processes (GPUs).  On the CPU,
``cpu_processes: N`` (N > 1) has this command start that torchrun itself, each process on one thread:
on a 2-core machine two such processes train a small model about 1.6x faster than one process on two
threads (whose per-op thread synchronisation costs as much as the second core gives).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import models
from ..cli import prog, run
from ..errors import DnnsepError
from ..training.config import (
    MODEL_KEY,
    TrainConfig,
    corpus_args,
    experiment_dir,
    load_config,
    parse_value,
    prepare_args,
    read_yaml,
    value_type_name,
)
from ..training.experiment import Experiment


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="Train a separation model on prepared mixture lists.",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_model_help(),
    )
    parser.add_argument("out_dir", nargs="?", metavar="OUT_DIR", help="experiments are made under this directory")
    parser.add_argument(
        "model_path", nargs="?", metavar="MODEL_PATH", help="a model/last.pth to continue from (same options)"
    )
    front = "DNNSEP_PROG" in os.environ  # the recipe's train.sh passes its conf/default.yaml
    parser.add_argument(
        "--config",
        required=not front,
        metavar="FILE",
        help="YAML file with every option "
        + (
            "(default: the recipe's conf/default.yaml)"
            if front
            else "(e.g. egs/librispeech/dprnn_tasnet/conf/default.yaml)"
        ),
    )
    parser.add_argument(
        "--get",
        metavar="KEY[,KEY...]",
        help="print the resolved value of KEY (a config key, model.<option>, experiment_dir, best_path, last_path, "
        "prepare_args or "
        "corpus_args), one per line, and exit; several keys: KEY,KEY,...",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check (config, data lists, experiment directory, MODEL_PATH) and exit; "
        "train.sh does this before starting several processes",
    )
    options = parser.add_argument_group("config overrides (defaults: the --config file)")
    for field in TrainConfig.__dataclass_fields__.values():
        if field.name == MODEL_KEY:
            continue
        help_text = field.metadata["help"]
        if field.metadata["choices"]:
            help_text += f" ({' | '.join(field.metadata['choices'])})"
        options.add_argument(
            f"--{field.name}", default=argparse.SUPPRESS, metavar=value_type_name(field.name), help=help_text
        )
    return parser


def _prog() -> str:
    """The name the user typed: the recipe front's (``train.sh``), else the module's."""
    return prog("python -m dnnsep.bin.train")


def _model_help() -> str:
    """The models' options and defaults, for the end of ``--help``."""
    lines = ["model options (--model.<option> VALUE, or --<option> VALUE; --model.name NAME picks the model):"]
    for name in models.names():
        config = models.get(name).config_class
        defaults = config().to_dict()
        shown = [f"{k}={_text(defaults[k])}" for k in config.options() if k not in ("n_sources", "sample_rate")]
        lines.append(f"  {name}: " + ", ".join(shown))
    return "\n".join(lines)


def _text(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _split_model_options(argv: list[str], parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, str]]:
    """Take ``--<option> VALUE`` pairs that are not the parser's own (model options) out of ``argv``."""
    own = set(parser._option_string_actions)
    rest: list[str] = []
    texts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        key = arg.split("=", 1)[0]
        if not arg.startswith("--") or arg == "--" or key in own:
            rest.append(arg)
        elif "=" in arg:
            texts[key[2:]] = arg.split("=", 1)[1]
        elif i + 1 < len(argv):
            texts[key[2:]] = argv[i + 1]
            i += 1
        else:
            parser.error(f"{arg} needs a value")
        i += 1
    return rest, texts


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_parser()
    rest, model_texts = _split_model_options(list(sys.argv[1:] if argv is None else argv), parser)
    args = parser.parse_args(rest)
    overrides = {key: parse_value(key, getattr(args, key)) for key in TrainConfig.keys() if hasattr(args, key)}
    name = model_texts.get("model.name") or model_texts.get("model")
    if name is None:
        section = read_yaml(args.config).get(MODEL_KEY)
        name = section.get("name") if isinstance(section, dict) else None
    for key, text in model_texts.items():
        overrides[key] = parse_value(key, text, model=name)
    if overrides.get("dataset_dir"):
        overrides["dataset_dir"] = os.path.abspath(os.path.expanduser(overrides["dataset_dir"]))
    cfg = load_config(args.config, overrides)
    if args.get is not None:
        print("\n".join(_values(cfg, args.get.split(","), args.config, args.out_dir)))
        return 0
    if args.out_dir is None:
        raise DnnsepError(f"OUT_DIR is missing: {_prog()} [--key value ...] OUT_DIR [MODEL_PATH]")
    from ..training.start import preflight
    from ..training.trainer import train  # imports torch's heavier parts only when training

    if args.check:
        print(f"ok: {preflight(cfg, args.out_dir, args.model_path)}")
        return 0
    processes = _cpu_processes(cfg)
    if processes > 1:  # refusals (existing experiment, MODEL_PATH, data) once, then torchrun runs this command
        print(f"ok: {preflight(cfg, args.out_dir, args.model_path)}; {processes} processes (cpu_processes)", flush=True)
        sys.stderr.flush()
        command = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command += ["-m", "dnnsep.bin.train", *(sys.argv[1:] if argv is None else argv)]
        os.execve(sys.executable, [sys.executable, *command], {**os.environ, "OMP_NUM_THREADS": "1"})
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone reports an error
        try:
            train(cfg, args.out_dir, resume=args.model_path)
        except DnnsepError:
            return 2
        _leave_group_process()
        return 0
    train(cfg, args.out_dir, resume=args.model_path)
    _leave_group_process()
    return 0


def _leave_group_process() -> None:
    """Under torchrun, once training is done and the group destroyed: exit at once, skipping the C++
    static destructors, where gloo's background threads now and then abort a finished process
    ("terminate called without an active exception"), which torchrun reports as a failed run."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _cpu_processes(cfg: TrainConfig) -> int:
    """Processes this command should start: ``cpu_processes`` when training on the CPU, else 1 (also
    when it is itself one of several: torchrun sets ``WORLD_SIZE``)."""
    if cfg.cpu_processes <= 1 or "WORLD_SIZE" in os.environ:
        return 1
    from ..device import select_device

    return cfg.cpu_processes if select_device(cfg.device).type == "cpu" else 1


def _values(cfg: TrainConfig, keys: list[str], config: str, out_dir: str | None) -> list[str]:
    """Text lines of ``--get KEY[,KEY...]``: one per value; ``prepare_args`` gives one line per argument."""
    lines = []
    for key in keys:
        if key == "prepare_args":
            lines.extend(prepare_args(config))
        elif key == "corpus_args":
            lines.extend(corpus_args(config))
        elif key == "--":  # a separator line between groups
            lines.append("--")
        elif key in ("experiment_dir", "best_path", "last_path"):
            if out_dir is None:
                raise DnnsepError(f"--get {key} needs OUT_DIR")
            exp = Experiment(experiment_dir(cfg, out_dir))
            lines.append(str({"experiment_dir": exp.root, "best_path": exp.best, "last_path": exp.last}[key]))
        elif key.startswith(MODEL_KEY + ".") and key.split(".", 1)[1] in cfg.model:
            lines.append(_text(cfg.model[key.split(".", 1)[1]]))
        elif key in TrainConfig.keys() and key != MODEL_KEY:
            lines.append(_text(getattr(cfg, key)))
        else:
            raise DnnsepError(
                f"--get {key}: not a config key, model.<option>, experiment_dir, best_path, last_path or prepare_args"
            )
    return lines


if __name__ == "__main__":
    run(main)
