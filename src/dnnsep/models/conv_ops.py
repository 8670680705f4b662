"""Fast CPU forms of the TCN's PReLU and depthwise convolution, each one autograd function.

Both compute what their torch counterparts compute; they exist for speed on CPU, where they are
several times faster than ``F.prelu`` (its backward) and ``conv1d``'s depthwise kernel (at large
dilations; its backward with per-example weights), and a depthwise conv written with in-place
multiply-adds on slices would, under autograd, copy its whole output once per tap in the backward.

>>> import torch, torch.nn.functional as F
>>> y, w, b = torch.randn(2, 6, 50), torch.randn(1, 6, 3), torch.randn(1, 6, 1)
>>> out = depthwise_conv(y, w, b, dilation=4, left=4)  # 'same' padding, 4 frames each side
>>> torch.allclose(out, F.conv1d(y, w.transpose(0, 1), b.view(-1), padding=4, dilation=4, groups=6), atol=1e-5)
True
>>> torch.allclose(prelu(y, torch.tensor([0.2])), F.prelu(y, torch.tensor([0.2])))
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PReLU with one slope (``weight`` of shape ``(1,)``, as ``nn.PReLU()`` holds it).

    Shape: any -> same.
    """
    if _tracing():
        return F.prelu(x, weight)
    return _PReLU.apply(x, weight)


def _tracing() -> bool:
    """Under torch.export / torch.compile / TorchScript tracing: plain ops, which exporters translate."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


class _PReLU(torch.autograd.Function):
    # On the CPU, forward and input gradient by leaky ReLU's kernels with the slope read as a number
    # (F.prelu's backward is slower there: docs/benchmarks.md); on a GPU the slope stays a tensor, since reading it
    # would wait for the device once per PReLU.  The slope's gradient is one dot product,
    # sum(grad * min(x, 0)), accumulated in float32 whatever the activations' dtype (see _dot32).
    @staticmethod
    def forward(ctx, x, weight):
        if slope_on_host(x):
            ctx.slope = float(weight)
            out = F.leaky_relu(x, ctx.slope)
        else:
            ctx.slope = weight.to(x.dtype)
            out = torch.where(x > 0, x, x * ctx.slope)
        ctx.save_for_backward(x)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            if isinstance(ctx.slope, float):
                grad_x = torch.ops.aten.leaky_relu_backward(grad, x, ctx.slope, False)
            else:
                grad_x = torch.where(x > 0, grad, grad * ctx.slope)
        if ctx.needs_input_grad[1]:
            grad_weight = _dot32(grad.reshape(-1), x.clamp(max=0).reshape(-1)).view(1)
        return grad_x, grad_weight


def slope_on_host(x: torch.Tensor) -> bool:
    """Whether the PReLU reads its slope as a Python number for ``x``: on the CPU, where that costs nothing."""
    return x.device.type == "cpu"


_DOT_BLOCK = 1 << 22  # elements per float32 block of a half-precision dot product (16 MB each side)


def _dot32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.dot(a, b)`` in float32 for float16/bfloat16 inputs, block by block (no float32 copy of the whole).

    A float16 dot returns float16: the PReLU slope's gradient sums ~10^7 products, times a GradScaler's
    2^16, far past float16's 65504.  Shape: a (n,), b (n,) -> () float32 (or the inputs' wider dtype).
    """
    if a.dtype not in (torch.float16, torch.bfloat16):
        return torch.dot(a, b)
    total = a.new_zeros((), dtype=torch.float32)
    for start in range(0, a.numel(), _DOT_BLOCK):
        block = slice(start, start + _DOT_BLOCK)
        total = total + torch.dot(a[block].float(), b[block].float())
    return total


def depthwise_conv(
    y: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    dilation: int,
    left: int,
    tap_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """A depthwise conv with zero padding: ``out[t] = bias + sum_k weight[k] * y[t - left + k * dilation]``.

    One multiply-add per tap over the frames where that tap reads ``y`` (no padded copy of ``y``).
    ``tap_bias[..., k]`` is a part of ``bias`` that counts only where tap k reads ``y``: it is taken
    back on the frames (at most ``(P-1) * dilation`` at each end) where tap k reads padding.

    Shape: y (batch, channels, frames); weight and tap_bias (batch or 1, channels, P); bias
    (batch or 1, channels, 1) -> (batch, channels, frames).
    """
    if _tracing():
        return _depthwise_plain(y, weight, bias, tap_bias, dilation, left)
    return _DepthwiseConv.apply(y, weight, bias, tap_bias, dilation, left)


def depthwise_conv_on_past(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, dilation: int, frames: int
) -> torch.Tensor:
    """A causal depthwise conv's last ``frames`` outputs, given its input from ``(P-1) * dilation``
    frames before them: ``out[t] = bias + sum_k weight[k] * z[t + k * dilation]`` (no padding; a
    stream's step, without autograd).

    Shape: z (batch, channels, (P-1) * dilation + frames); weight (1, channels, P); bias (channels, 1)
    -> (batch, channels, frames).
    """
    last = weight.shape[-1] - 1  # the tap on the current frame
    out = (z[..., last * dilation :] * weight[..., last:]).add_(bias)
    for k in range(last):
        out.addcmul_(z[..., k * dilation : k * dilation + frames], weight[..., k : k + 1])
    return out


def _depthwise_plain(y, weight, bias, tap_bias, dilation: int, left: int) -> torch.Tensor:
    """The same as :class:`_DepthwiseConv` in plain ops that exporters translate (pad, slices, multiply-adds;
    per-example weights and dynamic batch and length alike); ``tap_bias`` counts where a tap reads ``y``.

    Shape: as :func:`depthwise_conv`.
    """
    frames, taps = y.shape[-1], weight.shape[-1]
    pad = (left, (taps - 1) * dilation - left)
    padded = F.pad(y, pad)  # (batch, channels, frames + (P-1) * dilation)
    reads = F.pad(torch.ones_like(y[:1, :1]), pad) if tap_bias is not None else None  # 1 where y is read
    out = bias
    for k in range(taps):
        window = slice(k * dilation, k * dilation + frames)
        out = out + padded[..., window] * weight[..., k : k + 1]
        if tap_bias is not None:
            out = out + (reads[..., window] - 1) * tap_bias[..., k : k + 1]
    return out


def _taps(weight: torch.Tensor, frames: int, dilation: int, left: int) -> list[tuple[int, int, int, int]]:
    """``(k, offset, lo, hi)`` per tap: tap k reads frame ``t + offset`` for output frames ``lo <= t < hi``."""
    taps = []
    for k in range(weight.shape[-1]):
        offset = k * dilation - left
        taps.append((k, offset, max(0, -offset), min(frames, frames - offset)))
    return taps


def _edges(lo: int, hi: int, frames: int) -> tuple[slice, slice]:
    """The output frames before ``lo`` and from ``hi`` on (those where a tap reads padding)."""
    return slice(0, min(lo, frames)), slice(max(hi, lo), frames)


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, weight, bias, tap_bias, dilation, left):
        y = y.to(torch.promote_types(y.dtype, weight.dtype))  # under autocast y may be bfloat16: one dtype here
        frames = y.shape[-1]
        taps = _taps(weight, frames, dilation, left)
        centre = next((k for k, offset, _, _ in taps if offset == 0), None)
        if centre is not None:  # (batch, channels, frames); mul + add_ is faster than addcmul here
            out = (y * weight[..., centre : centre + 1]).add_(bias)
        else:
            out = (bias + y.new_zeros(())).expand(y.shape).contiguous()
        for k, offset, lo, hi in taps:
            if k != centre and lo < hi:
                out[..., lo:hi].addcmul_(y[..., lo + offset : hi + offset], weight[..., k : k + 1])
            if tap_bias is not None and offset:
                for edge in _edges(lo, hi, frames):
                    out[..., edge] -= tap_bias[..., k : k + 1]
        ctx.save_for_backward(y, weight)
        ctx.taps, ctx.shapes = taps, (bias.shape, None if tap_bias is None else tap_bias.shape)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        y, weight = ctx.saved_tensors
        frames = y.shape[-1]
        bias_shape, tap_bias_shape = ctx.shapes
        need_y, need_weight, need_bias, need_tap_bias = ctx.needs_input_grad[:4]
        centre = next((k for k, offset, _, _ in ctx.taps if offset == 0), None)
        grad_y = None
        if need_y:  # the transposed conv: tap k sends grad[t] back to frame t + offset
            grad_y = torch.zeros_like(y) if centre is None else grad * weight[..., centre : centre + 1]
        grad_weight = y.new_zeros(y.shape[:-1] + weight.shape[-1:]) if need_weight else None  # (batch, channels, P)
        grad_tap_bias = y.new_zeros(y.shape[:-1] + weight.shape[-1:]) if need_tap_bias else None
        for k, offset, lo, hi in ctx.taps:
            if lo < hi:
                g, x = grad[..., lo:hi], y[..., lo + offset : hi + offset]  # (batch, channels, hi - lo)
                if need_y and k != centre:
                    grad_y[..., lo + offset : hi + offset].addcmul_(g, weight[..., k : k + 1])
                if need_weight:
                    grad_weight[..., k] = torch.linalg.vecdot(g, x)
            if need_tap_bias and offset:
                grad_tap_bias[..., k] = -sum(grad[..., edge].sum(-1) for edge in _edges(lo, hi, frames))
        grad_bias = grad.sum(-1, keepdim=True).sum_to_size(bias_shape) if need_bias else None
        if need_weight:
            grad_weight = grad_weight.sum_to_size(weight.shape)
        if need_tap_bias:
            grad_tap_bias = grad_tap_bias.sum_to_size(tap_bias_shape)
        return grad_y, grad_weight, grad_bias, grad_tap_bias, None, None
