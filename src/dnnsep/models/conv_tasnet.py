"""Conv-TasNet (Luo and Mesgarani, IEEE/ACM TASLP 2019): its config and its masker.

The masker is the temporal convolutional network of :mod:`.tcn`.

>>> import torch
>>> config = ConvTasNetConfig(n_filters=16, kernel_size=4, bottleneck=8, hidden=16, skip_channels=8,
...                           n_layers=2, n_repeats=1)
>>> model = ConvTasNet(config)
>>> model(torch.randn(3, 799)).shape  # (batch, time) -> (batch, n_sources, time)
torch.Size([3, 2, 799])
>>> model.separate(torch.randn(799)).shape  # (time,) -> (n_sources, time)
torch.Size([2, 799])
>>> model.config.dir_names()
('N16_L4_B8_H16_P3_X2_R1', 'S2_Sc8_sigmoid_gln_noncausal_sr16k')
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import MaskingModel, ModelConfig
from .norms import NORMS
from .tcn import MASKS, TCN


@dataclass(frozen=True)
class ConvTasNetConfig(ModelConfig):
    """Hyper-parameters of :class:`ConvTasNet`; the defaults are the paper's best non-causal model.

    (N=512, L=16, B=128, H=512, P=3, X=8, R=3, Sc=128: about 5.1 M parameters.)  ``stride``
    defaults to ``kernel_size // 2`` and ``norm`` to ``'cln'`` when ``causal`` else ``'gln'``.
    """

    n_filters: int = 512  # N: encoder filters
    kernel_size: int = 16  # L: encoder window, in samples
    stride: int | None = None  # encoder hop, in samples (null: L // 2)
    bottleneck: int = 128  # B: channels of the 1x1 bottleneck and of each block's residual path
    hidden: int = 512  # H: channels inside each 1-D conv block
    conv_kernel: int = 3  # P: kernel of the depthwise convolutions
    n_layers: int = 8  # X: conv blocks per repeat, dilations 1, 2, ..., 2**(X-1)
    n_repeats: int = 3  # R: repeats
    skip_channels: int = 128  # Sc: channels of the skip connections
    n_sources: int = 2
    mask: str = "sigmoid"  # sigmoid | relu | softmax (across sources)
    norm: str | None = None  # gln | cln (null: gln, or cln when causal)
    causal: bool = False  # convolutions padded on the left only, cumulative norm
    encoder_activation: str = "relu"  # relu | linear
    signal_padding: str = "overlap"  # overlap: every sample under as many windows | none: asteroid's (see base.py)
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if isinstance(self.kernel_size, int):
            self._resolve(stride=self.kernel_size // 2)
        self._resolve(norm="cln" if self.causal else "gln")
        self._check_shared()
        self._check_integers("bottleneck", "hidden", "conv_kernel", "n_layers", "n_repeats", "skip_channels")
        self._check(
            [
                ("bottleneck", self.bottleneck >= 1, "must be at least 1"),
                ("hidden", self.hidden >= 1, "must be at least 1"),
                ("conv_kernel", self.conv_kernel >= 1, "must be at least 1"),
                ("n_layers", self.n_layers >= 1, "must be at least 1"),
                ("n_repeats", self.n_repeats >= 1, "must be at least 1"),
                ("skip_channels", self.skip_channels >= 1, "must be at least 1"),
                ("mask", self.mask in MASKS, f"must be one of {MASKS}"),
                ("norm", self.norm in NORMS, f"must be one of {NORMS}"),
                ("norm", not (self.causal and self.norm == "gln"), "'gln' looks ahead; a causal model needs 'cln'"),
            ]
        )

    def dir_names(self) -> tuple[str, str]:
        dims = (
            f"N{self.n_filters}_L{self.kernel_size}_B{self.bottleneck}_H{self.hidden}_P{self.conv_kernel}"
            f"_X{self.n_layers}_R{self.n_repeats}"
        )
        causal = "causal" if self.causal else "noncausal"
        options = (
            f"S{self.stride}_Sc{self.skip_channels}_{self.mask}_{self.norm}_{causal}{self._padding_name()}"
            f"_sr{self.sample_rate / 1000:g}k"
        )
        return dims, options

    @property
    def blocks(self) -> int:
        return self.n_layers * self.n_repeats

    @property
    def latency(self) -> int:
        """Samples of look-ahead of a causal model: a window's last sample is ``L - 1`` after its first,
        and the convolutions and cLN look back only."""
        return self.kernel_size - 1


class ConvTasNet(MaskingModel):
    """Conv-TasNet: the temporal convolutional network masker between the learned encoder and decoder.

    Shape: mixture (batch, time) -> estimated sources (batch, n_sources, time), for any time >= 1.
    """

    model_name = "ConvTasNet"
    config_name = "conv_tasnet"
    config_class = ConvTasNetConfig
    streams = True  # when causal: its masker runs on carried state

    def make_separator(self, config: ConvTasNetConfig) -> nn.Module:
        return TCN(
            in_channels=config.n_filters,
            bottleneck=config.bottleneck,
            hidden=config.hidden,
            skip_channels=config.skip_channels,
            kernel=config.conv_kernel,
            n_layers=config.n_layers,
            n_repeats=config.n_repeats,
            n_sources=config.n_sources,
            mask=config.mask,
            norm=config.norm,
            causal=config.causal,
        )
