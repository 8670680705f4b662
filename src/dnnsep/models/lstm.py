"""How the dual-path block's LSTM + linear layers run fast: one function, :func:`rnn_projection`.

The paper's block (:mod:`dnnsep.models.dual_path`) only says *what* is computed: an LSTM over the
first axis, bidirectional or not, followed by a linear layer.  This module decides *how*, per device:

- CPU: the two directions of a BiLSTM run side by side in a two-thread pool (forward and backward
  passes alike, through :class:`_SideBySide`), each on half of torch's threads; large inputs go
  through the LSTM kernel in batch slices and time segments with the state carried across.
- CUDA: a bidirectional pair runs as *one* bidirectional LSTM call built from the two
  directions' parameters (one cuDNN call instead of two serial ones and two flips), then one linear
  layer on the concatenated directions (:func:`_fused_bidirectional`).  The parameters stay where
  they are, so checkpoints keep their layout and gradients reach every one of them.
- Elsewhere (MPS, ...): the plain calls.

:func:`_path_for` names the path an input takes (``"cpu"``, ``"fused"`` or ``"plain"``).

Every path computes the same function of the same parameters (tests check values and gradients);
measured effects are in bench/README.md.

Shape: (time, batch, channels) -> (time, batch, channels).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .dual_path import RNNProjection

LSTM_BATCH_SLICE = 128  # sequences per LSTM call on CPU (see _lstm_then_linear)
LSTM_TIME_SLICE = 256  # steps per LSTM call on CPU, the state carried across (see _lstm_then_linear)

_direction_pool: tuple[int, ThreadPoolExecutor] | None = None  # (intra-op threads it was made for, pool)


def _pool_for_directions() -> ThreadPoolExecutor | None:
    """Two worker threads, each with half of torch's intra-op threads, for the two LSTM directions (CPU).

    On CPU the two directions of a BiLSTM are independent; running them side by side, each on half
    the cores, beats running them one after the other on all cores (no per-step barrier between
    threads, which a busy machine makes costly).  Made on first use, again if the thread count changes.
    """
    global _direction_pool
    threads = torch.get_num_threads()
    if threads < 2 or torch.jit.is_tracing() or torch.compiler.is_compiling():  # tracers see one thread only
        return None
    if _cpu_autocast():  # autocast is per thread: the pool's threads would run the LSTMs without it
        return None
    if _direction_pool is None or _direction_pool[0] != threads:
        if _direction_pool is not None:
            _direction_pool[1].shutdown(wait=False)
        pool = ThreadPoolExecutor(
            2, thread_name_prefix="dnnsep-lstm", initializer=torch.set_num_threads, initargs=(threads // 2,)
        )
        _direction_pool = (threads, pool)
    return _direction_pool[1]


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _path_for(x: torch.Tensor) -> str:
    """How a bidirectional pair runs on ``x``'s device: ``"cpu"`` (side by side, sliced), ``"fused"``
    (CUDA: one bidirectional LSTM call) or ``"plain"`` (the two calls, one after the other)."""
    kind = x.device.type
    return "cpu" if kind == "cpu" else "fused" if kind == "cuda" else "plain"


def rnn_projection(module: RNNProjection, x: torch.Tensor) -> torch.Tensor:
    """``module``'s LSTM(s) then linear layer(s) over ``x``, the fastest way for ``x``'s device.

    Shape: (time, batch, channels) -> (time, batch, channels).
    """
    forward = lambda xi: _lstm_then_linear(module.rnn, module.linear, xi)  # noqa: E731
    if module.rnn_reverse is None:  # unidirectional (the causal inter-chunk RNN): one call on every path
        return forward(x)
    path = _path_for(x)
    if path == "fused":
        return _fused_bidirectional(module, x)
    backward = lambda xi: _lstm_then_linear(module.rnn_reverse, module.linear_reverse, xi, reverse=True)  # noqa: E731
    pool = _pool_for_directions() if path == "cpu" else None
    if pool is None:
        return forward(x) + backward(x)
    if torch.is_grad_enabled():
        params = [p for m in (module.rnn, module.linear) for p in m.parameters()]
        params_reverse = [p for m in (module.rnn_reverse, module.linear_reverse) for p in m.parameters()]
        return _SideBySide.apply(x, pool, (forward, backward), len(params), *params, *params_reverse)
    inference = torch.is_inference_mode_enabled()  # grad modes are per thread: pass them on

    def run(direction):
        with torch.inference_mode(inference), torch.no_grad():
            return direction(x)

    done = [pool.submit(run, d) for d in (forward, backward)]
    return done[0].result().add_(done[1].result())  # no autograd here: sum in place


def _fused_bidirectional(module: RNNProjection, x: torch.Tensor) -> torch.Tensor:
    """A bidirectional pair as one BiLSTM call and one linear layer, from the pair's own parameters.

    The same function as the split layout: ``linear(h_fwd) + linear_reverse(h_bwd)`` equals one
    linear layer on ``cat([h_fwd, h_bwd])`` whose weight is the two weights side by side.  The flat
    weight list and the concatenated weight are built per call from the original parameters, so
    autograd reaches every one of them and the checkpoint layout is unchanged.  (cuDNN copies the
    non-contiguous weights into its buffer each call: a few MB, small next to the LSTM.)

    Shape: (time, batch, channels) -> (time, batch, channels).
    """
    rnn, rnn_reverse = module.rnn, module.rnn_reverse
    weights = [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0]
    weights += [rnn_reverse.weight_ih_l0, rnn_reverse.weight_hh_l0, rnn_reverse.bias_ih_l0, rnn_reverse.bias_hh_l0]
    zeros = x.new_zeros(2, x.shape[1], rnn.hidden_size)  # (directions, batch, units): the initial h and c
    with warnings.catch_warnings():  # the two modules' weights cannot be one contiguous chunk: expected
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
        h = torch._VF.lstm(x, (zeros, zeros), weights, True, 1, 0.0, module.training, True, False)[0]
    # h: (time, batch, 2 * units), forward direction first
    weight = torch.cat([module.linear.weight, module.linear_reverse.weight], dim=1)  # (channels, 2 * units)
    return F.linear(h, weight, module.linear.bias)


def _lstm_then_linear(rnn: nn.LSTM, linear: nn.Linear, x: torch.Tensor, *, reverse: bool = False) -> torch.Tensor:
    """``linear(rnn(x))``, or with ``reverse`` the same over the time-reversed ``x``, reversed back.

    On CPU, a large input goes in pieces written into the output as each is done, so it is never
    copied whole: slices of at most :data:`LSTM_BATCH_SLICE` sequences, which the LSTM kernel runs
    faster per frame than one huge batch (its per-step working set stays in cache), and, along time,
    segments of at most :data:`LSTM_TIME_SLICE` steps that pass the LSTM's state on to the next (the
    same result, with a tenth of the kernel workspace for a long input's inter-chunk LSTM).  A reverse
    pass takes the segments from the end.  Measured effects: bench/README.md.

    Shape: (time, batch, channels) -> (time, batch, channels).
    """
    time, batch = x.shape[:2]
    if x.device.type != "cpu" or (batch <= LSTM_BATCH_SLICE and time <= LSTM_TIME_SLICE):
        y = linear(rnn(x.flip(0) if reverse else x)[0])
        return y.flip(0) if reverse else y
    out = x.new_empty(time, batch, linear.out_features)
    starts = range(0, time, LSTM_TIME_SLICE)
    for i in range(0, batch, LSTM_BATCH_SLICE):
        state = None  # (h, c) carried from one time segment to the next
        for t in reversed(starts) if reverse else starts:
            part = x[t : t + LSTM_TIME_SLICE, i : i + LSTM_BATCH_SLICE]  # (steps, slice, channels), a view
            h, state = rnn(part.flip(0) if reverse else part.contiguous(), state)
            y = linear(h)
            out[t : t + LSTM_TIME_SLICE, i : i + LSTM_BATCH_SLICE] = y.flip(0) if reverse else y
    return out


class _SideBySide(torch.autograd.Function):
    """Training on CPU: both directions, forward and backward passes alike, in the two pool threads.

    Each direction records its own graph in its own thread; the backward pass differentiates the two
    graphs side by side and hands the gradients of the input and of every parameter back to autograd.
    """

    @staticmethod
    def forward(ctx, x, pool, directions, n_forward_params, *params):
        def run(direction):
            with torch.enable_grad():
                xi = x.detach().requires_grad_()
                return xi, direction(xi)

        ctx.runs = [f.result() for f in [pool.submit(run, d) for d in directions]]
        ctx.pool, ctx.split = pool, n_forward_params
        ctx.params = (params[:n_forward_params], params[n_forward_params:])
        return ctx.runs[0][1].detach() + ctx.runs[1][1].detach()

    @staticmethod
    def backward(ctx, grad):
        def run(i):
            xi, y = ctx.runs[i]
            return torch.autograd.grad(y, [xi, *ctx.params[i]], grad)

        (gx0, *g0), (gx1, *g1) = (f.result() for f in [ctx.pool.submit(run, i) for i in (0, 1)])
        ctx.runs = None  # free both graphs
        return (gx0 + gx1, None, None, None, *g0, *g1)
