"""Training: the YAML config, the experiment directory, and the trainer with exact resume.

The best model of a recipe run is ``experiment_dir(load_config(CONFIG), OUT_DIR) / "model" / "best.pth"``
(e.g. CONFIG = ``egs/librispeech/dprnn_tasnet/conf/default.yaml``, OUT_DIR as given to ``train.sh``).
"""

from .config import TrainConfig, experiment_dir, load_config
from .trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "experiment_dir", "load_config", "train"]
