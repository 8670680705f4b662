"""SpeechBrain's published SepFormers (a folder of ``hyperparams.yaml`` and ``*.ckpt``) as dnnsep models.

SpeechBrain (1.1) publishes a separator as a folder: ``hyperparams.yaml``, a HyperPyYAML file whose
``!new:`` tags name the classes to build, and ``encoder.ckpt``, ``masknet.ckpt``, ``decoder.ckpt``,
each a plain state dict.  Here the YAML is read as *data*: tags become :class:`Tagged` values and
``!ref <name>`` references are looked up, nothing is imported, called or executed, and a file with
Python tags (``!!python/...``) is refused.  A SepFormer (``Encoder``, ``Dual_Path_Model`` with
``SBTransformerBlock`` paths, ``Decoder``) becomes a :class:`~dnnsep.models.SepFormer` with the
options that make it compute what SpeechBrain's ``separate_batch`` computes:

- ``signal_padding='none'``: the encoder (stride ``kernel_size // 2``) reads the input as it is and
  the output is padded with zeros at the end;
- ``chunk_padding='speechbrain'`` (``hop_size = K // 2``; the back padded to an even number of chunks);
- ``head='gated'``, ``mask='relu'``, ``norm='gln'`` (SpeechBrain's ``ln`` is ``GroupNorm(1, C)``);
- the bottleneck's missing bias is zero; the position tables (``pos_enc.pe``) are computed instead.

Other SpeechBrain models (DPRNN and DPTNet paths, post-norm transformers, linear layers after the
paths, ...) are refused in one line naming the option.  The licence comes from the folder's model
card (``README.md``'s ``license:``) when it has one.

>>> text = "N: 4\\nEncoder: !new:speechbrain.lobes.models.dual_path.Encoder\\n  out_channels: !ref <N>\\n"
>>> read_hyperparams(text)["Encoder"]
Tagged(kind='new', target='speechbrain.lobes.models.dual_path.Encoder', args={'out_channels': 4})
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError
from .asteroid_format import _squeeze, _Weights
from .sepformer import SepFormer, SepFormerConfig

HYPERPARAMS = "hyperparams.yaml"
CHECKPOINTS = ("encoder.ckpt", "masknet.ckpt", "decoder.ckpt")
FILES = (HYPERPARAMS, *CHECKPOINTS)
_DUAL_PATH = "speechbrain.lobes.models.dual_path."
MAX_YAML_BYTES = 1 << 20  # a model's hyper-parameters are a few kB


@dataclass(frozen=True)
class Tagged:
    """A ``!new:``/``!name:``/``!apply:`` (or other ``!``) node as data: its kind, what it names, its arguments."""

    kind: str
    target: str
    args: Any


@dataclass(frozen=True)
class _Ref:
    expression: str


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with HyperPyYAML's tags read as data (never constructed)."""


def _construct_tagged(loader: _Loader, suffix: str, node: yaml.Node) -> Tagged:
    kind, _, target = suffix.partition(":")
    if isinstance(node, yaml.MappingNode):
        args: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        args = loader.construct_sequence(node, deep=True)
    else:
        args = loader.construct_scalar(node)
    if kind == "ref":
        return _Ref(str(args))  # type: ignore[return-value]
    return Tagged(kind, target, args)


_Loader.add_multi_constructor("!", _construct_tagged)


def read_hyperparams(text: str, *, source: str = HYPERPARAMS) -> dict[str, Any]:
    """The top-level mapping of a HyperPyYAML text as data, ``!ref <name>`` resolved; one line on anything else."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass: no Python objects
    except yaml.YAMLError as err:
        what = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "python" in str(err):
            what = "it holds Python tags (!!python/...), refused: a model's hyper-parameters are data"
        raise CheckpointError(f"{source}: cannot read it ({_printable(what)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: is not a mapping of hyper-parameters")

    def resolve(value: Any, depth: int = 0) -> Any:
        if depth > 20:
            raise CheckpointError(f"{source}: its !ref references go in a circle")
        if isinstance(value, _Ref):
            match = re.fullmatch(r"\s*<([\w.]+)>\s*", value.expression)
            if match is None:
                raise CheckpointError(
                    f"{source}: !ref {_printable(value.expression)!r} is an expression; only !ref <name> is read"
                )
            target: Any = data
            for part in match.group(1).split("."):
                if not isinstance(target, dict) or part not in target:
                    raise CheckpointError(f"{source}: !ref <{match.group(1)}> names nothing in the file")
                target = target[part]
            return resolve(target, depth + 1)
        if isinstance(value, Tagged):
            return Tagged(value.kind, value.target, resolve(value.args, depth + 1))
        if isinstance(value, dict):
            return {k: resolve(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, depth + 1) for v in value]
        return value

    return {key: resolve(value) for key, value in data.items()}


def is_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a SpeechBrain separator (its ``hyperparams.yaml``)."""
    return Path(path).is_dir() and (Path(path) / HYPERPARAMS).is_file()


# -- the model: SepFormer's options from the hyper-parameters ---------------------------------------


def _module(hparams: dict[str, Any], role: str, top: str, cls: str, source: str) -> dict[str, Any]:
    """The arguments of ``modules.<role>`` (or the top-level ``<top>``), which must be ``!new:`` ``cls``."""
    modules = hparams.get("modules") if isinstance(hparams.get("modules"), dict) else {}
    node = modules.get(role, hparams.get(top))
    if not isinstance(node, Tagged) or node.kind != "new":
        raise CheckpointError(f"{source}: has no {role} (modules.{role}: !new:{_DUAL_PATH}{cls})")
    if node.target != _DUAL_PATH + cls:
        raise CheckpointError(
            f"{source}: its {role} is {_printable(node.target)}; dnnsep reads SpeechBrain's SepFormer "
            f"({_DUAL_PATH}{cls})"
        )
    if not isinstance(node.args, dict):
        raise CheckpointError(f"{source}: its {role}'s arguments are not named (key: value)")
    return node.args


def _need(ok: bool, source: str, what: str) -> None:
    if not ok:
        raise CheckpointError(f"{source}: {what}; dnnsep reads SpeechBrain's SepFormer as published")


def config_from(hparams: dict[str, Any], *, source: str = HYPERPARAMS) -> SepFormerConfig:
    """The :class:`SepFormerConfig` computing what these hyper-parameters build; one line on what it cannot."""
    enc = _module(hparams, "encoder", "Encoder", "Encoder", source)
    mask = _module(hparams, "masknet", "MaskNet", "Dual_Path_Model", source)
    dec = _module(hparams, "decoder", "Decoder", "Decoder", source)
    paths = {}
    for role in ("intra_model", "inter_model"):
        node = mask.get(role)
        if not isinstance(node, Tagged) or node.target != _DUAL_PATH + "SBTransformerBlock":
            target = node.target if isinstance(node, Tagged) else type(node).__name__
            raise CheckpointError(
                f"{source}: its {role} is {_printable(target)}; dnnsep reads SepFormer's SBTransformerBlock"
            )
        args = node.args if isinstance(node.args, dict) else {}
        _need(bool(args.get("use_positional_encoding")), source, f"{role}: use_positional_encoding is off")
        _need(bool(args.get("norm_before")), source, f"{role}: norm_before is off (a post-norm transformer)")
        _need(args.get("activation", "relu") == "relu", source, f"{role}: activation is not relu")
        _need(args.get("attention_type", "regularMHA") == "regularMHA", source, f"{role}: attention is not regularMHA")
        _need(args.get("kdim") is None and args.get("vdim") is None, source, f"{role}: kdim/vdim are set")
        paths[role] = args
    intra, inter = paths["intra_model"], paths["inter_model"]
    for key, default in (("d_model", None), ("nhead", None), ("d_ffn", 2048), ("dropout", 0.1)):
        _need(intra.get(key, default) == inter.get(key, default), source, f"intra and inter {key} differ")
    _need(mask.get("norm", "ln") == "ln", source, f"masknet norm is {_printable(mask.get('norm'))!r}, not 'ln'")
    _need(mask.get("skip_around_intra", True) is True, source, "masknet: skip_around_intra is off")
    _need(mask.get("linear_layer_after_inter_intra", True) is False, source, "masknet: linear layers after the paths")
    _need(not mask.get("use_global_pos_enc", False), source, "masknet: use_global_pos_enc is on")
    _need(enc.get("in_channels", 1) == 1, source, "the encoder takes more than one channel")
    kernel = enc.get("kernel_size", 2)
    _need(dec.get("out_channels") == 1 and dec.get("bias") is False, source, "the decoder is not 1 channel, no bias")
    _need(dec.get("in_channels") == enc.get("out_channels", 64), source, "encoder and decoder widths differ")
    _need(dec.get("kernel_size") == kernel, source, "encoder and decoder windows differ")
    _need(isinstance(kernel, int) and dec.get("stride") == kernel // 2, source, "the decoder's stride is not L // 2")
    _need(intra.get("d_model") == mask.get("out_channels"), source, "d_model is not the masknet's out_channels")
    chunk = mask.get("K", 200)
    _need(isinstance(chunk, int) and chunk % 2 == 0, source, f"K={_printable(chunk)} is not even")
    rate = hparams.get("sample_rate")
    _need(isinstance(rate, int) and not isinstance(rate, bool), source, "no sample_rate")
    try:
        return SepFormerConfig(
            n_filters=enc.get("out_channels", 64),
            kernel_size=kernel,
            stride=kernel // 2,
            bottleneck=mask.get("out_channels"),
            chunk_size=chunk,
            hop_size=chunk // 2,
            n_blocks=mask.get("num_layers", 1),
            intra_layers=intra.get("num_layers"),
            inter_layers=inter.get("num_layers"),
            heads=intra.get("nhead"),
            ffn=intra.get("d_ffn", 2048),
            dropout=float(intra.get("dropout", 0.1)),
            n_sources=mask.get("num_spks", 2),
            mask="relu",
            norm="gln",
            encoder_activation="relu",
            signal_padding="none",
            chunk_padding="speechbrain",
            head="gated",
            sample_rate=rate,
        )
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid SepFormer: {_printable(err)}") from None


# -- the weights ------------------------------------------------------------------------------------


def _path(w: _Weights, to: str, of: str, layers: int) -> dict[str, torch.Tensor | None]:
    """One SBTransformerBlock (``of``) as a :class:`~dnnsep.models.transformer.TransformerPath` (``to``)."""
    out: dict[str, torch.Tensor | None] = {}
    w(f"{of}.pos_enc.pe")  # a table of sinusoids: computed, not read
    for j in range(layers):
        a, b = f"{to}.layers.{j}", f"{of}.mdl.layers.{j}"
        out[f"{a}.attention.in_proj_weight"] = w(f"{b}.self_att.att.in_proj_weight")
        out[f"{a}.attention.in_proj_bias"] = w(f"{b}.self_att.att.in_proj_bias")
        for p in ("weight", "bias"):
            out[f"{a}.attention.out_proj.{p}"] = w(f"{b}.self_att.att.out_proj.{p}")
            out[f"{a}.ffn_in.{p}"] = w(f"{b}.pos_ffn.ffn.0.{p}")
            out[f"{a}.ffn_out.{p}"] = w(f"{b}.pos_ffn.ffn.3.{p}")
            out[f"{a}.norm1.{p}"] = w(f"{b}.norm1.norm.{p}")
            out[f"{a}.norm2.{p}"] = w(f"{b}.norm2.norm.{p}")
    for p in ("weight", "bias"):
        out[f"{to}.norm.{p}"] = w(f"{of}.mdl.norm.norm.{p}")
    return out


def _group_norm(w: _Weights, to: str, of: str) -> dict[str, torch.Tensor | None]:
    """``GroupNorm(1, C)``'s weight and bias as gLN's gain and bias (``(C,)``, or ``(C, 1[, 1])``)."""
    flat = lambda t: t.reshape(-1)  # noqa: E731
    return {f"{to}.gain": w(f"{of}.weight", flat), f"{to}.bias": w(f"{of}.bias", flat)}


def state_dict_from(
    encoder: dict[str, Any], masknet: dict[str, Any], decoder: dict[str, Any], config: SepFormerConfig, source: str
) -> dict[str, torch.Tensor]:
    """SpeechBrain's three state dicts renamed to :class:`SepFormer`'s; one line on a missing or extra one."""
    out: dict[str, torch.Tensor | None] = {}
    for name, state, what in (("encoder.ckpt", encoder, "encoder"), ("decoder.ckpt", decoder, "decoder")):
        w = _Weights(state, f"{source}/{name}", toolkit="SpeechBrain", config="hyperparams.yaml")
        out[f"{what}.conv.weight"] = w("conv1d.weight" if what == "encoder" else "weight")
        w.check_all_used()
    w = _Weights(masknet, f"{source}/masknet.ckpt", toolkit="SpeechBrain", config="hyperparams.yaml")
    out.update(_group_norm(w, "separator.in_norm", "norm"))
    out["separator.bottleneck.weight"] = bottleneck = w("conv1d.weight", _squeeze)
    if bottleneck is not None:
        out["separator.bottleneck.bias"] = bottleneck.new_zeros(bottleneck.shape[0])  # SpeechBrain's has none
    for i in range(config.n_blocks):
        to, of = f"separator.blocks.{i}", f"dual_mdl.{i}"
        out.update(_path(w, f"{to}.intra", f"{of}.intra_mdl", config.intra_layers))
        out.update(_path(w, f"{to}.inter", f"{of}.inter_mdl", config.inter_layers))
        out.update(_group_norm(w, f"{to}.intra_norm", f"{of}.intra_norm"))
        out.update(_group_norm(w, f"{to}.inter_norm", f"{of}.inter_norm"))
    out["separator.out_act.weight"] = w("prelu.weight")
    out["separator.mask_conv.weight"] = w("conv2d.weight", _squeeze)
    out["separator.mask_conv.bias"] = w("conv2d.bias")
    for p in ("weight", "bias"):
        out[f"separator.gate_out.{p}"] = w(f"output.0.{p}", _squeeze)
        out[f"separator.gate.{p}"] = w(f"output_gate.0.{p}", _squeeze)
    out["separator.mask_out.weight"] = w("end_conv1x1.weight", _squeeze)
    w.check_all_used()
    return {k: v for k, v in out.items() if v is not None}


def to_dnnsep(folder: str | os.PathLike) -> dict[str, Any]:
    """The dnnsep checkpoint dict of the SpeechBrain separator in ``folder`` (weights loaded ``weights_only``)."""
    folder = Path(folder)
    source = str(folder)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{source}: a SpeechBrain separator's folder lacks {', '.join(missing)}")
    path = folder / HYPERPARAMS
    if path.stat().st_size > MAX_YAML_BYTES:
        raise CheckpointError(f"{path}: {path.stat().st_size} bytes is not a model's hyper-parameters")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read it ({_printable(err)})") from None
    config = config_from(read_hyperparams(text, source=str(path)), source=str(path))
    states = []
    for name in CHECKPOINTS:
        state = load_checkpoint(folder / name)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{folder / name}: is not a state dict of tensors")
        states.append(state)
    layers = config.n_blocks * (config.intra_layers + config.inter_layers)
    if layers > len(states[1]):  # before naming a tensor per layer: a file asking for 10^8 layers is refused at once
        raise CheckpointError(
            f"{source}: masknet.ckpt weights do not match its hyperparams.yaml ({layers} transformer layers, "
            f"{len(states[1])} tensors in all)"
        )
    state_dict = state_dict_from(*states, config, source)
    return {"model_name": SepFormer.model_name, "model_args": config.to_dict(), "state_dict": state_dict}


def provenance(folder: str | os.PathLike) -> dict[str, str]:
    """What a tool says about a converted model: the format, the model, the licence its model card states."""
    out = {"format": "speechbrain", "model": "SepFormer"}
    card = Path(folder) / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8", errors="replace")[:20000]
        front = re.match(r"---\s*\n(.*?)\n---", text, re.S)
        match = re.search(r"^licen[cs]e:\s*(.+)$", front.group(1), re.M) if front else None
        if match:
            out["licence"] = _printable(match.group(1).strip().strip("\"'"))
    return out


def _printable(value: Any) -> str:
    text = str(value)
    return "".join(c if c.isprintable() else "?" for c in text)[:200]
