"""Training: the YAML config, the experiment and its layout, and the trainer with exact resume.

The best model of a recipe run is ``Experiment(experiment_dir(load_config(CONFIG), OUT_DIR)).best``
(e.g. CONFIG = ``egs/librispeech/dprnn_tasnet/conf/default.yaml``, OUT_DIR as given to ``train.sh``;
see :mod:`.experiment`).  The trainer (``Trainer``, ``train``) is imported on first use only, so the
tools that read configs or experiments do not load it.
"""

from typing import Any

from .config import TrainConfig, experiment_dir, load_config
from .experiment import Experiment

__all__ = ["Experiment", "TrainConfig", "Trainer", "experiment_dir", "load_config", "train"]


def __getattr__(name: str) -> Any:
    if name in ("Trainer", "train"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
