"""SepFormer (Subakan, Ravanelli, Cornell, Bronzi and Zhong, ICASSP 2021): the dual-path masker with transformers.

The masker is DPRNN's (:class:`~dnnsep.models.dual_path.DualPathSeparator`: norm, bottleneck,
chunks, dual-path blocks, overlap-add, head) with each block's intra- and inter-chunk RNNs replaced by
pre-norm transformer encoders (:mod:`dnnsep.models.transformer`), and SepFormer's gated head and
ReLU masks by default.  The config's defaults are the paper's model (about 25.7 M parameters); a
model SpeechBrain published loads into this class (:mod:`dnnsep.models.speechbrain_format`).

>>> import torch
>>> config = SepFormerConfig(n_filters=16, kernel_size=4, chunk_size=10, hop_size=5, n_blocks=1,
...                          intra_layers=1, inter_layers=1, heads=2, ffn=32)
>>> SepFormer(config)(torch.randn(3, 799)).shape  # (batch, time) -> (batch, n_sources, time)
torch.Size([3, 2, 799])
>>> config.dir_names()
('N16_L4_K10_P5_B1_I1_E1', 'S2_F16_A2_D32_relu_gln_gatedhead_sr16k')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .base import MaskingModel, ModelConfig
from .dual_path import CHUNK_PADDINGS, HEADS, MASKS, DualPathSeparator
from .norms import NORMS
from .transformer import TransformerPath


@dataclass(frozen=True)
class SepFormerConfig(ModelConfig):
    """Hyper-parameters of :class:`SepFormer`; the defaults are the paper's (WSJ0-2mix, 8 kHz there).

    ``stride`` defaults to ``kernel_size // 2`` and ``bottleneck`` (the transformers' width) to
    ``n_filters``.  SepFormer has no causal variant: it does not stream.
    """

    n_filters: int = 256  # N: encoder filters
    kernel_size: int = 16  # L: encoder window, in samples
    stride: int | None = None  # encoder hop, in samples (null: L // 2)
    bottleneck: int | None = None  # F: the transformers' width, d_model (null: N)
    chunk_size: int = 250  # K: frames per chunk
    hop_size: int = 125  # P: frames between chunk starts
    n_blocks: int = 2  # B: dual-path blocks
    intra_layers: int = 8  # transformer layers inside each chunk, per block
    inter_layers: int = 8  # transformer layers across chunks, per block
    heads: int = 8  # attention heads (must divide the bottleneck)
    ffn: int = 1024  # feed-forward units of each transformer layer
    dropout: float = 0.0  # in the attention and after each transformer sub-layer, while training
    n_sources: int = 2
    mask: str = "relu"  # relu | sigmoid | softmax (across sources)
    norm: str = "gln"  # the norm after each path and at the masker's input: gln | cln
    encoder_activation: str = "relu"  # relu | linear
    signal_padding: str = "overlap"  # overlap: every sample under as many windows | none: SpeechBrain's
    chunk_padding: str = "overlap"  # zero frames at each end: overlap: K - P | chunk: K | speechbrain
    head: str = "gated"  # gated: PReLU, linear, tanh x sigmoid gate, linear | linear: PReLU, linear
    sample_rate: int = 16000

    causal: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if isinstance(self.kernel_size, int) and isinstance(self.n_filters, int):
            self._resolve(stride=self.kernel_size // 2, bottleneck=self.n_filters)
        self._check_shared()
        self._check_integers(
            "bottleneck", "chunk_size", "hop_size", "n_blocks", "intra_layers", "inter_layers", "heads", "ffn"
        )
        self._check(
            [
                ("bottleneck", self.bottleneck >= 2 and self.bottleneck % 2 == 0, "must be an even number >= 2"),
                ("chunk_size", self.chunk_size >= 2, "must be at least 2"),
                ("hop_size", 1 <= self.hop_size <= self.chunk_size, f"must be in 1..chunk_size ({self.chunk_size})"),
                (
                    "hop_size",
                    self.chunk_size % self.hop_size == 0,
                    f"must divide chunk_size ({self.chunk_size}) so every frame is in the same number of chunks",
                ),
                ("n_blocks", self.n_blocks >= 1, "must be at least 1"),
                ("intra_layers", self.intra_layers >= 1, "must be at least 1"),
                ("inter_layers", self.inter_layers >= 1, "must be at least 1"),
                ("heads", self.heads >= 1, "must be at least 1"),
                ("heads", self.bottleneck % self.heads == 0, f"must divide the bottleneck ({self.bottleneck})"),
                ("ffn", self.ffn >= 1, "must be at least 1"),
                (
                    "dropout",
                    isinstance(self.dropout, (int, float))
                    and not isinstance(self.dropout, bool)
                    and 0 <= self.dropout < 1,
                    "must be a number in [0, 1)",
                ),
                ("mask", self.mask in MASKS, f"must be one of {MASKS}"),
                ("norm", self.norm in NORMS, f"must be one of {NORMS}"),
                ("chunk_padding", self.chunk_padding in CHUNK_PADDINGS, f"must be one of {CHUNK_PADDINGS}"),
                (
                    "chunk_padding",
                    self.chunk_padding != "speechbrain" or 2 * self.hop_size == self.chunk_size,
                    "'speechbrain' needs hop_size = chunk_size / 2",
                ),
                ("head", self.head in HEADS, f"must be one of {HEADS}"),
            ]
        )

    def dir_names(self) -> tuple[str, str]:
        dims = f"N{self.n_filters}_L{self.kernel_size}_K{self.chunk_size}_P{self.hop_size}"
        dims += f"_B{self.n_blocks}_I{self.intra_layers}_E{self.inter_layers}"
        options = f"S{self.stride}_F{self.bottleneck}_A{self.heads}_D{self.ffn}"
        options += f"_drop{self.dropout:g}" if self.dropout else ""
        options += f"_{self.mask}_{self.norm}" + self._padding_name()
        options += {"overlap": "", "chunk": "_chunkpad", "speechbrain": "_sbpad"}[self.chunk_padding]
        options += f"_{self.head}head" + f"_sr{self.sample_rate / 1000:g}k"
        return dims, options

    @property
    def blocks(self) -> int:
        return self.n_blocks

    @property
    def latency(self) -> int:
        raise AttributeError("SepFormer has no causal variant, hence no latency")


class SepFormer(MaskingModel):
    """SepFormer: the dual-path transformer masker between the learned encoder and decoder.

    Shape: mixture (batch, time) -> estimated sources (batch, n_sources, time), for any time >= 1.
    """

    model_name = "SepFormer"
    config_name = "sepformer"
    config_class = SepFormerConfig

    def make_separator(self, config: SepFormerConfig) -> nn.Module:
        def paths() -> tuple[nn.Module, nn.Module]:
            shared = dict(channels=config.bottleneck, heads=config.heads, ffn=config.ffn, dropout=config.dropout)
            return TransformerPath(layers=config.intra_layers, **shared), TransformerPath(
                layers=config.inter_layers, **shared
            )

        return DualPathSeparator.from_config(config, paths)
