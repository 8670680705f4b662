"""asteroid's published separators (``pytorch_model.bin``) as dnnsep models that compute the same output.

asteroid (0.7) publishes ``{model_name, model_args, state_dict, infos}`` (and, from its recipes,
``dataset``, ``task``, ``licenses``).  Its ``ConvTasNet`` and ``DPRNNTasNet`` with the free
filterbank become dnnsep's :class:`~dnnsep.models.ConvTasNet` and
:class:`~dnnsep.models.DPRNNTasNet` with the options that make them compute what asteroid does:

- ``signal_padding='none'``: asteroid encodes the input as it is and pads its output with zeros
  at the end (``pad_x_to_y``); its encoder has no non-linearity unless ``encoder_activation`` says;
- DPRNN: ``chunk_padding='chunk'`` (``unfold`` with ``chunk_size`` zero frames at each end) and
  ``head='gated'`` (PReLU and a 1x1 conv on the chunks, overlap-add, ``tanh * sigmoid`` gate, a
  1x1 conv without bias); asteroid's ``hid_size`` is per direction, dnnsep's ``hidden`` both;
- Conv-TasNet: the last block's residual conv, which asteroid computes and never reads, is left out.

The weights are renamed (gLN's ``gamma``/``beta`` are ``gain``/``bias``), 1x1 convs become linear
layers, each BiLSTM's output layer is split per direction.  Anything else asteroid can build
(other filterbanks, norms, RNNs, causal models, mask non-linearities dnnsep lacks) is refused in
one line naming the option.  :func:`to_dnnsep` returns a dnnsep checkpoint dict; the registry checks
its shapes on the meta device before building the model, as for dnnsep's own checkpoints.

>>> args = {"fb_name": "free", "n_filters": 8, "kernel_size": 4, "stride": 2, "n_src": 2, "bn_chan": 6,
...         "hid_size": 4, "chunk_size": 10, "hop_size": 5, "n_repeats": 1, "sample_rate": 8000}
>>> dnnsep_options("DPRNNTasNet", args)["head"], dnnsep_options("DPRNNTasNet", args)["hidden"]
('gated', 8)
"""

from __future__ import annotations

import re
from typing import Any, Callable

import torch

from ..errors import CheckpointError

FILE_NAME = "pytorch_model.bin"  # what asteroid's hub repositories hold

# asteroid's constructor defaults, for options an older file does not store
_DEFAULTS = {
    "ConvTasNet": dict(
        n_blocks=8, n_repeats=3, bn_chan=128, hid_chan=512, skip_chan=128, conv_kernel_size=3, norm_type="gLN",
        mask_act="sigmoid", causal=False, fb_name="free", kernel_size=16, n_filters=512, stride=8,
        encoder_activation=None, sample_rate=8000,
    ),
    "DPRNNTasNet": dict(
        bn_chan=128, hid_size=128, chunk_size=100, hop_size=None, n_repeats=6, norm_type="gLN", mask_act="sigmoid",
        bidirectional=True, rnn_type="LSTM", num_layers=1, dropout=0, use_mulcat=False, fb_name="free",
        kernel_size=16, n_filters=64, stride=8, encoder_activation=None, sample_rate=8000,
    ),
}  # fmt: skip
# options that only need a value dnnsep computes alike (checked below); any other key is refused
_ACCEPTED = {"n_src", "in_chan", "out_chan", "padding", "output_padding"}
_MASKS = {"ConvTasNet": ("sigmoid", "relu", "softmax"), "DPRNNTasNet": ("sigmoid", "relu")}


def is_asteroid(ckpt: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint dict is asteroid's (its ``model_args`` say ``n_src``/``fb_name``)."""
    args = ckpt.get("model_args")
    return isinstance(args, dict) and ("n_src" in args or "fb_name" in args)


def dnnsep_options(name: str, args: dict[str, Any], *, source: str = "checkpoint") -> dict[str, Any]:
    """dnnsep's options for asteroid's ``model_name`` and ``model_args``; a CheckpointError for anything else."""
    if name not in _DEFAULTS:
        raise CheckpointError(
            f"{source}: an asteroid {_printable(name)!r} model; dnnsep converts {' and '.join(_DEFAULTS)} only"
        )
    unknown = sorted(str(k) for k in set(args) - set(_DEFAULTS[name]) - _ACCEPTED)
    if unknown:
        raise CheckpointError(f"{source}: asteroid {name} option(s) dnnsep does not convert: {_printable(unknown)}")
    a = {**_DEFAULTS[name], **args}

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise CheckpointError(f"{source}: asteroid {name} with {key}={_printable(a.get(key))!r}: {what}")

    need("fb_name", a["fb_name"] in ("free", "FreeFB"), "dnnsep converts the free filterbank only")
    need("padding", a.get("padding", 0) == 0, "dnnsep converts unpadded filterbanks only")
    need("output_padding", a.get("output_padding", 0) == 0, "dnnsep converts unpadded filterbanks only")
    need("in_chan", a.get("in_chan") in (None, a["n_filters"]), "must equal n_filters")
    need("out_chan", a.get("out_chan") in (None, a["n_filters"]), "dnnsep masks every filter (out_chan = n_filters)")
    need("encoder_activation", a["encoder_activation"] in (None, "linear", "relu"), "dnnsep has linear and relu")
    need("mask_act", a["mask_act"] in _MASKS[name], f"dnnsep converts {', '.join(_MASKS[name])}")
    rate = a["sample_rate"]
    need("sample_rate", isinstance(rate, (int, float)) and float(rate).is_integer(), "must be a whole number of Hz")
    options = dict(
        n_filters=a["n_filters"],
        kernel_size=a["kernel_size"],
        stride=a["kernel_size"] // 2 if a["stride"] is None and isinstance(a["kernel_size"], int) else a["stride"],
        n_sources=a.get("n_src"),
        mask=a["mask_act"],
        encoder_activation="relu" if a["encoder_activation"] == "relu" else "linear",
        signal_padding="none",
        sample_rate=int(rate),
    )
    if name == "ConvTasNet":
        need("causal", a["causal"] is False, "dnnsep converts non-causal models only")
        need("norm_type", a["norm_type"] in ("gLN", "cgLN"), "dnnsep has gLN and cgLN (its 'cln')")
        need("skip_chan", bool(a["skip_chan"]), "dnnsep's TCN has skip connections")
        return dict(
            options,
            bottleneck=a["bn_chan"],
            hidden=a["hid_chan"],
            conv_kernel=a["conv_kernel_size"],
            n_layers=a["n_blocks"],
            n_repeats=a["n_repeats"],
            skip_channels=a["skip_chan"],
            norm="gln" if a["norm_type"] == "gLN" else "cln",
            causal=False,
        )
    need("norm_type", a["norm_type"] == "gLN", "dnnsep converts gLN DPRNNs only")
    need("bidirectional", a["bidirectional"] is True, "dnnsep converts bidirectional DPRNNs only")
    need("rnn_type", a["rnn_type"] == "LSTM", "dnnsep's DPRNN has LSTMs")
    need("num_layers", a["num_layers"] == 1, "dnnsep's DPRNN has one LSTM layer per path")
    need("use_mulcat", a["use_mulcat"] is False, "dnnsep has no MulCat blocks")
    hid = a["hid_size"]
    return dict(
        options,
        bottleneck=a["bn_chan"],
        hidden=2 * hid if isinstance(hid, int) and not isinstance(hid, bool) else hid,  # both directions
        chunk_size=a["chunk_size"],
        hop_size=a["chunk_size"] // 2 if a["hop_size"] is None and isinstance(a["chunk_size"], int) else a["hop_size"],
        n_blocks=a["n_repeats"],
        norm="gln",
        causal=False,
        chunk_padding="chunk",
        head="gated",
    )


def to_dnnsep(ckpt: dict[str, Any], *, source: str = "checkpoint") -> dict[str, Any]:
    """asteroid's checkpoint dict as dnnsep's ``{model_name, model_args, state_dict}``.

    The options are checked first (dnnsep's config validates them), then the number of blocks
    against the number of tensors (so no loop runs over a block count the weights cannot hold),
    then the weights' names; their shapes are checked by the registry, on the meta device.
    """
    from . import get  # the registry imports this module

    name, args, state = ckpt.get("model_name"), ckpt.get("model_args"), ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: an asteroid checkpoint without a state_dict of tensors")
    options = dnnsep_options(name, args, source=source)
    try:
        config = get(name).config_class.from_dict(options)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: asteroid {name} options dnnsep cannot build: {_printable(err)}") from None
    blocks = config.blocks
    if blocks > len(state):
        raise CheckpointError(
            f"{source}: weights do not match its config ({blocks} blocks, {len(state)} tensors in all)"
        )
    weights = _Weights(state, source)
    renamed = _conv_tasnet(weights, blocks) if name == "ConvTasNet" else _dprnn(weights, blocks)
    weights.check_all_used()
    return {"model_name": name, "model_args": config.to_dict(), "state_dict": renamed}


def provenance(ckpt: dict[str, Any]) -> dict[str, str]:
    """What a tool says about a converted model: format, asteroid's model name and version, licence."""
    infos = ckpt.get("infos") if isinstance(ckpt.get("infos"), dict) else {}
    versions = infos.get("software_versions") if isinstance(infos.get("software_versions"), dict) else {}
    version = versions.get("asteroid_version")
    out = {"format": "asteroid" + (f" {_printable(version)}" if isinstance(version, str) else "")}
    out["model"] = _printable(ckpt.get("model_name"))
    licence = licence_of(ckpt)
    if licence:
        out["licence"] = licence
    return out


def licence_of(ckpt: dict[str, Any]) -> str:
    """The licence a published file states ('' if none): a ``license`` field, else asteroid's notice,
    shortened to what it licenses the model under and the licences of the data it derives from."""
    infos = ckpt.get("infos") if isinstance(ckpt.get("infos"), dict) else {}
    for holder in (infos, ckpt):
        for key in ("license", "licence"):
            if isinstance(holder.get(key), str):
                return _printable(holder[key])
    parts = []
    note = infos.get("license_note")
    if isinstance(note, str):
        text = re.sub(r"<[^>]*>", "", note)  # the notice's links are HTML
        match = re.search(r"is licensed under (.+?)(?: by |\.?$)", text)
        parts.append(match.group(1).strip() if match else text)
    data = ckpt.get("licenses")
    if isinstance(data, list):
        held = [f"{d.get('title', '?')}: {d.get('license', '?')}" for d in data if isinstance(d, dict)]
        if held:
            parts.append("data " + ", ".join(held))
    return _printable("; ".join(parts))


# -- weights ---------------------------------------------------------------------------------------


class _Weights:
    """A published state dict read by name: each name taken once, the missing and the left-over ones reported."""

    def __init__(self, state: dict[str, Any], source: str, *, toolkit: str = "asteroid", config: str = "model_args"):
        self.state, self.source, self.toolkit, self.config = state, source, toolkit, config
        self.used: set[str] = set()
        self.missing: list[str] = []

    def __call__(self, key: str, change: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor | None:
        self.used.add(key)
        value = self.state.get(key)
        if not isinstance(value, torch.Tensor):
            self.missing.append(key)
            return None
        return change(value) if change is not None else value

    def check_all_used(self) -> None:
        unexpected = sorted(_printable(k) for k in set(self.state) - self.used)
        parts = []
        for label, items in (("missing", self.missing), ("unexpected", unexpected)):
            if items:
                more = f" and {len(items) - 3} more" if len(items) > 3 else ""
                parts.append(f"{label}: {', '.join(items[:3])}{more}")
        if parts:
            raise CheckpointError(
                f"{self.source}: {self.toolkit} weights do not match its {self.config} ({'; '.join(parts)})"
            )


def _squeeze(t: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv's weight as a linear layer's: (out, in, 1[, 1]) -> (out, in); other shapes as they are."""
    return t.flatten(1) if t.dim() > 2 and all(n == 1 for n in t.shape[2:]) else t


def _half(t: torch.Tensor, i: int) -> torch.Tensor:
    """Half ``i`` of a BiLSTM's output layer's inputs: (channels, 2 * units) -> (channels, units)."""
    return t[:, i * (t.shape[1] // 2) : (i + 1) * (t.shape[1] // 2)] if t.dim() == 2 and t.shape[1] % 2 == 0 else t


def _filterbanks(w: _Weights) -> dict[str, torch.Tensor | None]:
    return {
        "encoder.conv.weight": w("encoder.filterbank._filters"),
        "decoder.conv.weight": w("decoder.filterbank._filters"),
    }


def _norm(w: _Weights, to: str, of: str) -> dict[str, torch.Tensor | None]:
    return {f"{to}.gain": w(f"{of}.gamma"), f"{to}.bias": w(f"{of}.beta")}


def _conv_tasnet(w: _Weights, blocks: int) -> dict[str, torch.Tensor | None]:
    out = _filterbanks(w)
    out.update(_norm(w, "separator.norm", "masker.bottleneck.0"))
    out["separator.bottleneck.weight"] = w("masker.bottleneck.1.weight")
    out["separator.bottleneck.bias"] = w("masker.bottleneck.1.bias")
    for i in range(blocks):
        of, to = f"masker.TCN.{i}", f"separator.blocks.{i}"
        out[f"{to}.in_conv.weight"] = w(f"{of}.shared_block.0.weight")
        out[f"{to}.in_conv.bias"] = w(f"{of}.shared_block.0.bias")
        out[f"{to}.prelu_in.weight"] = w(f"{of}.shared_block.1.weight")
        out.update(_norm(w, f"{to}.norm_in", f"{of}.shared_block.2"))
        out[f"{to}.depthwise.weight"] = w(f"{of}.shared_block.3.weight")
        out[f"{to}.depthwise.bias"] = w(f"{of}.shared_block.3.bias")
        out[f"{to}.prelu_out.weight"] = w(f"{of}.shared_block.4.weight")
        out.update(_norm(w, f"{to}.norm_out", f"{of}.shared_block.5"))
        residual = [w(f"{of}.res_conv.{p}") for p in ("weight", "bias")]  # the last block's: never read
        for p, res in zip(("weight", "bias"), residual):
            skip = w(f"{of}.skip_conv.{p}")
            last = i == blocks - 1
            ok = skip is not None and res is not None and res.shape[1:] == skip.shape[1:]
            # residual and skip convs run as one conv of bottleneck + skip outputs
            out[f"{to}.out_conv.{p}"] = skip if last or not ok else torch.cat([res, skip])
    out["separator.prelu.weight"] = w("masker.mask_net.0.weight")
    out["separator.mask_conv.weight"] = w("masker.mask_net.1.weight")
    out["separator.mask_conv.bias"] = w("masker.mask_net.1.bias")
    return out


def _dprnn(w: _Weights, blocks: int) -> dict[str, torch.Tensor | None]:
    out = _filterbanks(w)
    out.update(_norm(w, "separator.in_norm", "masker.bottleneck.0"))
    out["separator.bottleneck.weight"] = w("masker.bottleneck.1.weight", _squeeze)
    out["separator.bottleneck.bias"] = w("masker.bottleneck.1.bias")
    for i in range(blocks):
        of, to = f"masker.net.{i}", f"separator.blocks.{i}"
        for path in ("intra", "inter"):
            rnn = f"{of}.{path}_RNN.rnn"
            for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                out[f"{to}.{path}.rnn.{p}_l0"] = w(f"{rnn}.{p}_l0")
                out[f"{to}.{path}.rnn_reverse.{p}_l0"] = w(f"{rnn}.{p}_l0_reverse")
            # one linear layer on [forward, backward] outputs = one per direction, summed
            out[f"{to}.{path}.linear.weight"] = w(f"{of}.{path}_linear.weight", lambda t: _half(t, 0))
            out[f"{to}.{path}.linear_reverse.weight"] = w(f"{of}.{path}_linear.weight", lambda t: _half(t, 1))
            out[f"{to}.{path}.linear.bias"] = w(f"{of}.{path}_linear.bias")
            out.update(_norm(w, f"{to}.{path}_norm", f"{of}.{path}_norm"))
    out["separator.out_act.weight"] = w("masker.first_out.0.weight")
    out["separator.mask_conv.weight"] = w("masker.first_out.1.weight", _squeeze)
    out["separator.mask_conv.bias"] = w("masker.first_out.1.bias")
    for to, of in (("gate_out", "net_out"), ("gate", "net_gate")):
        out[f"separator.{to}.weight"] = w(f"masker.{of}.0.weight", _squeeze)
        out[f"separator.{to}.bias"] = w(f"masker.{of}.0.bias")
    out["separator.mask_out.weight"] = w("masker.mask_net.weight", _squeeze)
    return out


def _printable(value: Any) -> str:
    """``str(value)`` with control characters replaced, at most 200 characters."""
    return "".join(c if c.isprintable() else "?" for c in str(value))[:200]
