"""GPU and Mac paths, checked on CPU: the fused BiLSTM path, float32 statistics under autocast, the
mixed-precision dtype choice, and the MPS guard (MPS and CUDA simulated)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from dnnsep import DPRNNConfig, DPRNNTasNet, pretrained
from dnnsep import device as device_module
from dnnsep.losses import pit_si_sdr
from dnnsep.models import lstm
from dnnsep.models.dual_path import DualPathBlock, RNNProjection, rnn_paths
from dnnsep.models.norms import CumulativeLayerNorm, GlobalLayerNorm
from dnnsep.training import amp
from dnnsep.training.amp import amp_dtype, uses_scaler

TINY = dict(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=2)


def _force_path(monkeypatch, path: str) -> list:
    """Make every RNNProjection take ``path``; returns the list the fused function appends to per call."""
    calls = []
    fused = lstm._fused_bidirectional

    def spy(module, x):
        calls.append(tuple(x.shape))
        return fused(module, x)

    monkeypatch.setattr(lstm, "_path_for", lambda x: path)
    monkeypatch.setattr(lstm, "_fused_bidirectional", spy)
    return calls


def _grads(module: torch.nn.Module, x: torch.Tensor, out: torch.Tensor) -> list[torch.Tensor]:
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    return list(torch.autograd.grad((out * weight).sum(), [x, *module.parameters()]))


# -- the fused bidirectional path --------------------------------------------------------------


def test_path_for_picks_the_fused_path_on_cuda_only():
    on = lambda kind: types.SimpleNamespace(device=torch.device(kind))  # noqa: E731  (no GPU needed)
    assert lstm._path_for(torch.zeros(1)) == "cpu"
    assert lstm._path_for(on("cuda")) == "fused" and lstm._path_for(on("cuda:1")) == "fused"
    assert lstm._path_for(on("mps")) == "plain" and lstm._path_for(torch.zeros(1, device="meta")) == "plain"


@pytest.mark.parametrize(
    "time, batch",
    [(10, 300), (100, 20)],  # intra-chunk-like (short sequences, big batch), inter-chunk-like (longer)
    ids=["intra", "inter"],
)
def test_fused_bidirectional_equals_the_split_path_values_and_gradients(time, batch):
    torch.manual_seed(0)
    module = RNNProjection(channels=16, hidden=32, bidirectional=True)
    x = torch.randn(time, batch, 16, requires_grad=True)  # (time, batch, channels)
    split = module(x)  # the CPU path
    fused = lstm._fused_bidirectional(module, x)
    torch.testing.assert_close(fused, split, rtol=1e-5, atol=1e-5)
    got_grads, want_grads = _grads(module, x, fused), _grads(module, x, split)
    assert len(got_grads) == 1 + 11  # the input, and LSTM (2 x 4) and linear (2 + 1) parameters
    for got, want in zip(got_grads, want_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fused_path_is_taken_for_bidirectional_pairs_and_leaves_unidirectional_lstms(monkeypatch):
    torch.manual_seed(0)
    intra, inter = rnn_paths(channels=8, hidden=12, causal=True)  # bidirectional intra, causal inter
    block = DualPathBlock(intra=intra, inter=inter, channels=8, norm="cln")
    x = torch.randn(10, 6, 2, 8, requires_grad=True)  # (chunk_size, chunks, batch, channels)
    want = block(x)
    want_grads = _grads(block, x, want)
    calls = _force_path(monkeypatch, "fused")
    got = block(x)
    assert calls == [(10, 12, 8)]  # the intra-chunk pair only: (chunk_size, chunks * batch, channels)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for g, w in zip(_grads(block, x, got), want_grads):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_whole_model_with_the_fused_path_forced_equals_the_default_path(monkeypatch, causal):
    torch.manual_seed(0)
    model = DPRNNTasNet(DPRNNConfig(**TINY, causal=causal))
    mix, refs = torch.randn(2, 1200), torch.randn(2, 2, 1200)
    want = model(mix)
    want_grads = torch.autograd.grad(pit_si_sdr(want, refs).loss, list(model.parameters()))
    with torch.inference_mode():
        want_inference = model(mix)
    calls = _force_path(monkeypatch, "fused")
    got = model(mix)
    got_grads = torch.autograd.grad(pit_si_sdr(got, refs).loss, list(model.parameters()))
    with torch.inference_mode():
        got_inference = model(mix)
    assert len(calls) == 2 * (TINY["n_blocks"] * (1 if causal else 2))  # two passes, each pair once
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_inference, want_inference, rtol=1e-5, atol=1e-5)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    assert list(model.state_dict()) == list(DPRNNTasNet(DPRNNConfig(**TINY, causal=causal)).state_dict())


# -- mixed precision ---------------------------------------------------------------------------


def test_amp_dtype_is_bf16_from_capability_8_else_fp16_always_with_a_scaler_on_cuda():
    cuda = torch.device("cuda")
    for capability, dtype in (((8, 6), torch.bfloat16), ((7, 0), torch.float16)):
        assert amp_dtype(cuda, capability=capability) == dtype and uses_scaler(dtype, cuda)
    cpu = torch.device("cpu")
    for supported, dtype in ((True, torch.bfloat16), (False, None)):  # a CPU with or without bfloat16 instructions
        assert amp_dtype(cpu, bf16_supported=supported) == dtype and not uses_scaler(dtype, cpu)
    assert amp_dtype(torch.device("mps")) is None
    assert not uses_scaler(None, cuda)


@pytest.mark.cpu_bf16
@pytest.mark.parametrize("causal", [False, True], ids=["gln", "cln"])
@pytest.mark.parametrize("grad", [True, False], ids=["train", "inference"])
def test_norm_statistics_and_loss_are_float32_under_bf16_autocast(monkeypatch, causal, grad):
    """The whole model where this CPU has bfloat16 instructions; elsewhere (oneDNN has no bfloat16 LSTM
    there) the norms and the loss alone, which hold the float32 statistics."""
    seen = []
    norm_class = CumulativeLayerNorm if causal else GlobalLayerNorm
    moments = norm_class.moments

    def spy(self, x, **kw):
        mean, var = moments(self, x, **kw)
        seen.append((x.dtype, mean.dtype, var.dtype))
        return mean, var

    monkeypatch.setattr(norm_class, "moments", spy)
    torch.manual_seed(0)
    model = DPRNNTasNet(DPRNNConfig(**TINY, causal=causal)).train(grad)
    mix, refs = torch.randn(2, 1200), torch.randn(2, 2, 1200)
    seen_count = 1 + 2 * TINY["n_blocks"]  # the input norm and each block's two
    if not amp.cpu_has_bf16():  # the norms alone, fed by bfloat16 linear layers: (batch, time, channels)
        layers = torch.nn.Sequential(torch.nn.Linear(8, 8), norm_class(8), torch.nn.Linear(8, 8), norm_class(8))
        model = lambda mix: layers(mix.view(2, 150, 8)).reshape(2, 2, 600).repeat(1, 1, 2)  # (batch, 2, 1200)
        model.parameters = layers.parameters
        seen_count = 2
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
        estimates = model(mix)
        loss = pit_si_sdr(estimates, refs).loss  # even inside autocast, on bfloat16 estimates
    assert len(seen) == seen_count
    assert {s[1:] for s in seen} == {(torch.float32, torch.float32)}
    assert loss.dtype == torch.float32 and bool(torch.isfinite(loss)) and bool(torch.isfinite(estimates).all())
    half = estimates.to(torch.bfloat16)
    assert pit_si_sdr(half, refs.to(torch.bfloat16)).si_sdr.dtype == torch.float32
    if grad:
        loss.backward()
        assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())


# -- the MPS guard -----------------------------------------------------------------------------


@pytest.fixture
def fake_mps(monkeypatch):
    """A CPU model that the guard believes is on MPS; ``state["error"]`` perturbs the 'MPS' output."""
    state = {"error": 0.0, "raise": None, "calls": 0}
    real_forward = device_module._forward

    def forward(model, x, device):
        if device.type != "mps":
            return real_forward(model, x, device)
        state["calls"] += 1
        if state["raise"]:
            raise RuntimeError(state["raise"])
        out = real_forward(model, x, torch.device("cpu"))
        return out + state["error"] * out.abs().max()

    monkeypatch.setattr(device_module, "_forward", forward)
    monkeypatch.setattr(device_module, "_mps_verdicts", {})
    monkeypatch.setattr(device_module, "_model_device", lambda m: MPS)
    monkeypatch.delenv(device_module.FORCE_MPS_ENV, raising=False)
    return state


MPS = torch.device("mps")


def _model() -> DPRNNTasNet:
    torch.manual_seed(0)
    return DPRNNTasNet(DPRNNConfig(**TINY)).train()


def test_guard_mps_keeps_mps_when_its_output_matches_the_cpu(fake_mps, capsys):
    model = _model()
    assert device_module.guard_mps(model) == (model, MPS)
    assert model.training  # its mode is restored
    other = _model()
    assert device_module.guard_mps(other) == (other, MPS)
    assert fake_mps["calls"] == 1  # once per architecture per process
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("failure", ["mismatch", "error"])
def test_guard_mps_falls_back_to_the_cpu_on_a_mismatch_and_says_how_to_force(fake_mps, capsys, monkeypatch, failure):
    fake_mps["error"], fake_mps["raise"] = (0.01, None) if failure == "mismatch" else (0.0, "no kernel for aten::x")
    model = _model()
    got, device = device_module.guard_mps(model)
    assert got is model and device == torch.device("cpu")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "running on the CPU, not MPS" in err and "DNNSEP_FORCE_MPS=1" in err
    assert ("differs from the CPU's by 0.01" if failure == "mismatch" else "no kernel for aten::x") in err
    monkeypatch.setenv("DNNSEP_FORCE_MPS", "1")
    other = _model()
    assert device_module.guard_mps(other) == (other, MPS) and fake_mps["calls"] == 1  # forced: not checked


def test_guard_mps_leaves_other_devices_alone_and_load_model_uses_it(monkeypatch, tmp_path):
    model = torch.nn.Linear(2, 2)
    assert device_module.guard_mps(model) == (model, torch.device("cpu"))
    seen = []
    monkeypatch.setattr(pretrained, "guard_mps", lambda m: seen.append(m) or (m, torch.device("cpu")))
    best = Path(__file__).parent / "data" / "v1_dprnn" / "best.pth"
    net, path = pretrained.load_model(str(best), recipe_dir=tmp_path, device=torch.device("cpu"))
    assert seen == [net] and not net.training and path == best
