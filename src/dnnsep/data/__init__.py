"""Data: LibriSpeech download and mixture lists (``prepare``), the training dataset, offline corpora.

- :mod:`dnnsep.data.librispeech`: download / verify / extract LibriSpeech, or link an existing copy.
- :mod:`dnnsep.data.lists`: mixture lists ``<dataset_dir>/<n>mix/<split>.json`` (format in its doc).
- :mod:`dnnsep.data.dataset`: :class:`MixtureDataset` over those lists.
- :mod:`dnnsep.data.synthetic`: a tiny speech-like corpus in LibriSpeech's layout, and a mirror of it.
- :mod:`dnnsep.data.tts`: an offline corpus of synthesised voices in that layout (``make_offline_corpus``);
  :mod:`dnnsep.data.synthesisers`: the flite and festival voices it draws on beside espeak-ng's.
- :mod:`dnnsep.data.rooms`, :mod:`dnnsep.data.noise`, :mod:`dnnsep.data.scene`: reverberation (simulated
  or measured rooms) and noise (files, downloadable corpora, synthetic), drawn per mixture.
"""

from .dataset import MixtureDataset
from .lists import SPLITS, list_path, read_list

__all__ = ["SPLITS", "MixtureDataset", "list_path", "read_list"]
