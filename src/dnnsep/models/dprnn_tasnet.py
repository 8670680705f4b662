"""Dual-Path RNN TasNet (Luo, Chen and Yoshioka, ICASSP 2020): its config and its masker.

>>> import torch
>>> model = DPRNNTasNet(DPRNNConfig(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=1))
>>> model(torch.randn(3, 799)).shape  # (batch, time) -> (batch, n_sources, time)
torch.Size([3, 2, 799])
>>> model.separate(torch.randn(799)).shape  # (time,) -> (n_sources, time)
torch.Size([2, 799])
>>> model.config.dir_names()
('N16_L4_H16_K10_P5_B1', 'S2_F16_sigmoid_gln_noncausal_sr16k')
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import MaskingModel, ModelConfig
from .dual_path import CHUNK_PADDINGS, HEADS, MASKS, DualPathSeparator, rnn_paths
from .norms import NORMS


@dataclass(frozen=True)
class DPRNNConfig(ModelConfig):
    """Hyper-parameters of :class:`DPRNNTasNet`; the defaults are the seed recipe's.

    ``stride`` defaults to ``kernel_size // 2``, ``bottleneck`` to ``n_filters`` and ``norm`` to
    ``'cln'`` when ``causal`` else ``'gln'``.  A causal model (``causal=True``) has an algorithmic
    latency of ``chunk_size * stride + kernel_size`` samples (see :attr:`latency`).
    """

    n_filters: int = 64  # N: encoder filters
    kernel_size: int = 16  # L: encoder window, in samples
    stride: int | None = None  # encoder hop, in samples (null: L // 2)
    bottleneck: int | None = None  # F: channels inside the separator (null: N)
    hidden: int = 256  # H: LSTM units per layer, both directions together
    chunk_size: int = 100  # K: frames per chunk
    hop_size: int = 50  # P: frames between chunk starts
    n_blocks: int = 3  # B: dual-path blocks
    n_sources: int = 2
    mask: str = "sigmoid"  # sigmoid | relu | softmax (across sources)
    norm: str | None = None  # gln | cln (null: gln, or cln when causal)
    causal: bool = False  # unidirectional inter-chunk LSTM and cumulative norm
    encoder_activation: str = "relu"  # relu | linear
    signal_padding: str = "overlap"  # overlap: every sample under as many windows | none: asteroid's (see base.py)
    chunk_padding: str = "overlap"  # zero frames at each end: overlap: K - P | chunk: K (asteroid's)
    head: str = "linear"  # linear: PReLU, linear | gated: asteroid's (PReLU, linear, tanh x sigmoid gate, linear)
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if isinstance(self.kernel_size, int) and isinstance(self.n_filters, int):
            self._resolve(stride=self.kernel_size // 2, bottleneck=self.n_filters)
        self._resolve(norm="cln" if self.causal else "gln")
        self._check_shared()
        self._check_integers("bottleneck", "hidden", "chunk_size", "hop_size", "n_blocks")
        self._check(
            [
                ("bottleneck", self.bottleneck >= 1, "must be at least 1"),
                (
                    "hidden",
                    self.hidden >= 2 and (self.causal or self.hidden % 2 == 0),
                    "must be an even number >= 2 (it is split between the two LSTM directions)",
                ),
                ("chunk_size", self.chunk_size >= 2, "must be at least 2"),
                ("hop_size", 1 <= self.hop_size <= self.chunk_size, f"must be in 1..chunk_size ({self.chunk_size})"),
                (
                    "hop_size",
                    self.chunk_size % self.hop_size == 0,
                    f"must divide chunk_size ({self.chunk_size}) so every frame is in the same number of chunks",
                ),
                ("n_blocks", self.n_blocks >= 1, "must be at least 1"),
                ("mask", self.mask in MASKS, f"must be one of {MASKS}"),
                ("chunk_padding", self.chunk_padding in CHUNK_PADDINGS, f"must be one of {CHUNK_PADDINGS}"),
                ("head", self.head in HEADS, f"must be one of {HEADS}"),
                ("norm", self.norm in NORMS, f"must be one of {NORMS}"),
                ("norm", not (self.causal and self.norm == "gln"), "'gln' looks ahead; a causal model needs 'cln'"),
            ]
        )

    def dir_names(self) -> tuple[str, str]:
        dims = f"N{self.n_filters}_L{self.kernel_size}_H{self.hidden}"
        dims += f"_K{self.chunk_size}_P{self.hop_size}_B{self.n_blocks}"
        causal = "causal" if self.causal else "noncausal"
        options = f"S{self.stride}_F{self.bottleneck}_{self.mask}_{self.norm}_{causal}"
        options += self._padding_name() + ("_chunkpad" if self.chunk_padding == "chunk" else "")
        options += f"_{self.head}head" if self.head != "linear" else ""
        options += f"_sr{self.sample_rate / 1000:g}k"
        return dims, options

    @property
    def blocks(self) -> int:
        return self.n_blocks

    @property
    def latency(self) -> int:
        """Samples of look-ahead of a causal model: one chunk of frames plus one window."""
        return self.chunk_size * self.stride + self.kernel_size


class DPRNNTasNet(MaskingModel):
    """Dual-Path RNN TasNet: the dual-path RNN masker between the learned encoder and decoder.

    Shape: mixture (batch, time) -> estimated sources (batch, n_sources, time), for any time >= 1.
    """

    model_name = "DPRNNTasNet"
    config_name = "dprnn_tasnet"
    config_class = DPRNNConfig
    streams = True  # when causal: its masker runs on carried state

    def make_separator(self, config: DPRNNConfig) -> nn.Module:
        return DualPathSeparator.from_config(
            config, lambda: rnn_paths(channels=config.bottleneck, hidden=config.hidden, causal=config.causal)
        )
