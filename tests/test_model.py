"""DPRNN-TasNet: shapes, causality, every option, checkpoints and bad configs."""

import dataclasses

import numpy as np
import pytest
import torch

from dnnsep import CheckpointError, DPRNNConfig, DPRNNTasNet

TINY = dict(n_filters=16, kernel_size=16, hidden=16, chunk_size=100, hop_size=50, n_blocks=1)


def tiny(**changes) -> DPRNNTasNet:
    torch.manual_seed(0)
    return DPRNNTasNet(DPRNNConfig(**{**TINY, **changes})).eval()


@pytest.mark.parametrize("mask", ["sigmoid", "relu", "softmax"])
@pytest.mark.parametrize("batch", [1, 3])
def test_output_length_equals_input_length(mask, batch):
    model = tiny(mask=mask, n_sources=3)
    for length in (1, 7, 799, 16000, 16001):
        with torch.no_grad():
            out = model(torch.randn(batch, length))
        assert out.shape == (batch, 3, length)
        assert torch.isfinite(out).all()


def test_default_config_is_the_seed_recipe_and_its_size_is_pinned():
    config = DPRNNConfig()
    assert (config.n_filters, config.kernel_size, config.stride, config.bottleneck) == (64, 16, 8, 64)
    assert (config.hidden, config.chunk_size, config.hop_size, config.n_blocks) == (256, 100, 50, 3)
    assert (config.n_sources, config.mask, config.norm, config.causal, config.sample_rate) == (
        2,
        "sigmoid",
        "gln",
        False,
        16000,
    )
    model = DPRNNTasNet()
    assert sum(p.numel() for p in model.parameters()) == 1_306_049
    intra = model.separator.blocks[0].intra
    assert intra.rnn.hidden_size == intra.rnn_reverse.hidden_size == 128  # H = 256 in all, H/2 per direction
    assert intra.linear.in_features == intra.linear_reverse.in_features == 128
    assert model.separator.bottleneck.out_features == 64  # F = N by default


def test_mask_nonlinearities():
    x = torch.randn(2, 4000)
    w = tiny().encoder(torch.nn.functional.pad(x, (8, 8)))
    for mask, check in [
        ("softmax", lambda m: torch.allclose(m.sum(1), torch.ones_like(m.sum(1)))),  # across sources
        ("sigmoid", lambda m: bool(((m > 0) & (m < 1)).all())),
        ("relu", lambda m: bool((m >= 0).all()) and bool((m == 0).any())),
    ]:
        masks = tiny(mask=mask, n_sources=3).separator(w)
        assert masks.shape == (2, 3, 16, w.shape[-1]) and check(masks), mask


def perturbation_reach(model: DPRNNTasNet, t0: int, length: int = 6000) -> torch.Tensor:
    """Largest change of each output sample when the input changes from sample t0 on."""
    torch.manual_seed(1)
    x = torch.randn(1, length)
    y = x.clone()
    y[:, t0:] += torch.randn(1, length - t0)
    with torch.no_grad():
        return (model(x) - model(y)).abs().amax(dim=(0, 1))  # (time,)


@pytest.mark.parametrize("t0", [3000, 4321])
def test_causal_model_does_not_look_further_ahead_than_its_latency(t0):
    model = tiny(causal=True, chunk_size=20, hop_size=10, n_blocks=2)
    latency = model.config.latency  # chunk_size * stride + kernel_size = 20 * 8 + 16
    assert latency == 176
    change = perturbation_reach(model, t0)
    assert change[: t0 - latency].max() < 1e-5  # nothing before t0 - latency moves
    assert change[t0:].min() > 0  # while the perturbed part does


def test_non_causal_model_fails_the_causality_check():
    model = tiny(causal=False, chunk_size=20, hop_size=10, n_blocks=2)
    change = perturbation_reach(model, 3000)
    assert change[: 3000 - model.config.latency].max() > 1e-3  # the same check would catch look-ahead
    # and cumulative norm alone is not enough: the inter-chunk BiLSTM also looks ahead
    change = perturbation_reach(tiny(causal=False, norm="cln", chunk_size=20, hop_size=10), 3000)
    assert change[: 3000 - model.config.latency].max() > 1e-3


OPTION_CHANGES = {
    "n_filters": 24,
    "kernel_size": 8,
    "stride": 4,
    "bottleneck": 12,
    "hidden": 24,
    "chunk_size": 50,
    "hop_size": 25,
    "n_blocks": 2,
    "n_sources": 3,
    "mask": "relu",
    "norm": "cln",
    "causal": True,
    "encoder_activation": "linear",
    "signal_padding": "none",
    "chunk_padding": "chunk",
    "head": "gated",
}


@pytest.mark.parametrize("name", sorted(OPTION_CHANGES))
def test_every_option_changes_the_model(name):
    base = tiny()
    other = tiny(**{name: OPTION_CHANGES[name]})
    assert getattr(other.config, name) != getattr(base.config, name)
    x = torch.randn(2, 3000)
    shapes = lambda m: [tuple(p.shape) for p in m.state_dict().values()]  # noqa: E731
    with torch.no_grad():
        differs = shapes(base) != shapes(other) or not torch.allclose(base(x), other(x))
    assert differs, f"{name} changes nothing in the model"


def test_every_config_field_is_covered_by_the_option_test():
    fields = {f.name for f in dataclasses.fields(DPRNNConfig)}
    assert fields - set(OPTION_CHANGES) == {"sample_rate"}  # the input rate: checked by audio I/O, not the net


@pytest.mark.parametrize(
    "changes, option",
    [
        (dict(hop_size=120), "hop_size"),
        (dict(hop_size=30), "hop_size"),  # does not divide chunk_size
        (dict(kernel_size=1), "kernel_size"),
        (dict(n_sources=0), "n_sources"),
        (dict(mask="tanh"), "mask"),
        (dict(norm="batch"), "norm"),
        (dict(causal=True, norm="gln"), "norm"),
        (dict(hidden=15), "hidden"),
        (dict(n_blocks=0), "n_blocks"),
        (dict(stride=20), "stride"),
        (dict(n_filters=2.5), "n_filters"),
    ],
)
def test_invalid_configs_name_the_option(changes, option):
    with pytest.raises(ValueError, match=rf"\b{option}\b"):
        DPRNNConfig(**{**TINY, **changes})


def test_config_from_dict_refuses_unknown_options():
    with pytest.raises(ValueError, match="n_filter"):
        DPRNNConfig.from_dict({"n_filter": 64})
    assert DPRNNConfig.from_dict(DPRNNConfig(causal=True).to_dict()) == DPRNNConfig(causal=True)


def test_separate_accepts_numpy_and_tensors_without_autograd():
    model = tiny()
    x = np.random.default_rng(0).standard_normal(1234).astype(np.float32)
    out = model.separate(x)
    assert isinstance(out, np.ndarray) and out.shape == (2, 1234)
    batch = model.separate(torch.from_numpy(np.stack([x, x])))
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 2, 1234) and not batch.requires_grad
    np.testing.assert_allclose(batch[0].numpy(), out, atol=1e-5)
    assert model.separate(x.astype(np.float64)).dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        model.separate(np.zeros((1, 2, 100)))


def test_checkpoint_round_trip_gives_identical_output(tmp_path):
    model = tiny(causal=True, mask="softmax", n_sources=3)
    path = tmp_path / "model.pth"
    model.save(path)
    ckpt = torch.load(path, weights_only=True)  # plain values only
    assert set(ckpt) == {"model_name", "model_args", "state_dict"}
    loaded = DPRNNTasNet.from_checkpoint(path).eval()
    assert loaded.config == model.config
    x = torch.randn(2, 5000)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_bad_checkpoints_give_one_line_errors_naming_the_file(tmp_path):
    def error(path):
        with pytest.raises(CheckpointError) as info:
            DPRNNTasNet.from_checkpoint(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message
        return message

    assert "no such" in error(tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    assert "not a readable" in error(corrupt)
    good = tmp_path / "good.pth"
    tiny().save(good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:2000])
    assert "not a readable" in error(truncated)
    other = tmp_path / "other.pth"
    torch.save({"model_name": "ConvTasNet", "model_args": {}, "state_dict": {}}, other)
    assert "ConvTasNet" in error(other)
    mismatched = tmp_path / "mismatched.pth"
    ckpt = tiny().checkpoint()
    ckpt["model_args"]["hidden"] = 32
    torch.save(ckpt, mismatched)
    assert "do not match" in error(mismatched)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model_name": "DPRNNTasNet", "model_args": DPRNNConfig(**TINY)}, pickled)  # a pickled object
    assert "not a readable" in error(pickled)


def test_forward_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        tiny()(torch.randn(2, 1, 100))
    with pytest.raises(ValueError, match="time >= 1"):
        tiny()(torch.randn(2, 0))


def test_rnn_projection_equals_a_bilstm_followed_by_a_linear_layer():
    from dnnsep.models.dual_path import RNNProjection

    torch.manual_seed(0)
    block = RNNProjection(channels=6, hidden=10, bidirectional=True)
    bilstm = torch.nn.LSTM(6, 5, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(bilstm, name).copy_(getattr(block.rnn, name))
            getattr(bilstm, name + "_reverse").copy_(getattr(block.rnn_reverse, name))
    x = torch.randn(13, 4, 6)  # (time, batch, channels)
    linear = torch.nn.Linear(10, 6)
    with torch.no_grad():
        linear.weight.copy_(torch.cat([block.linear.weight, block.linear_reverse.weight], 1))
        linear.bias.copy_(block.linear.bias)
    torch.testing.assert_close(block(x), linear(bilstm(x)[0]))


def test_directions_run_side_by_side_in_inference_with_identical_results():
    from dnnsep.models import lstm as dual_path
    from dnnsep.models.dual_path import RNNProjection

    torch.manual_seed(0)
    block = RNNProjection(channels=6, hidden=10, bidirectional=True)
    x = torch.randn(13, 4, 6)
    reference = block(x).detach()  # grad enabled: both directions in this thread
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.inference_mode():
            in_pool = block(x)
        with torch.no_grad():
            in_pool_no_grad = block(x)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(in_pool, reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(in_pool_no_grad, reference, rtol=0, atol=1e-6)
    assert not in_pool_no_grad.requires_grad
    assert dual_path._direction_pool is not None and dual_path._direction_pool[0] == 2  # the pool did the work


def test_training_on_two_threads_gives_the_gradients_of_one_thread():
    from dnnsep.losses import pit_si_sdr

    torch.manual_seed(0)
    model = DPRNNTasNet(DPRNNConfig(n_filters=16, hidden=16, chunk_size=20, hop_size=10, n_blocks=2))
    mix, refs = torch.randn(3, 4000), torch.randn(3, 2, 4000)

    def gradients(threads):
        torch.set_num_threads(threads)  # 1: directions in turn; 2: side by side in the pool
        model.zero_grad()
        pit_si_sdr(model(mix), refs).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    threads = torch.get_num_threads()
    try:
        one, two = gradients(1), gradients(2)
    finally:
        torch.set_num_threads(threads)
    assert set(one) == set(two) and all(g.abs().sum() > 0 for g in two.values())
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)


def _slice_lstms(monkeypatch, batch: int, steps: int) -> None:
    from dnnsep.models import lstm as dual_path

    monkeypatch.setattr(dual_path, "LSTM_BATCH_SLICE", batch)
    monkeypatch.setattr(dual_path, "LSTM_TIME_SLICE", steps)


@pytest.mark.parametrize("causal", [False, True])
def test_inference_in_lstm_slices_equals_one_call(monkeypatch, causal):
    model = tiny(n_blocks=2, causal=causal)
    x = torch.randn(2, 9000)  # 2 x 11 chunks of 100 frames: intra batches of 22, inter of 200
    with torch.no_grad():
        _slice_lstms(monkeypatch, 10**9, 10**9)
        whole = model(x)
        _slice_lstms(monkeypatch, 7, 4)  # batch slices and time segments (the state carried) of both RNNs
        sliced = model(x)
    torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_training_in_lstm_slices_gives_the_same_gradients(monkeypatch, causal):
    model = tiny(n_blocks=1, causal=causal)
    x = torch.randn(2, 9000)

    def gradients():
        model.zero_grad()
        model(x).pow(2).mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    _slice_lstms(monkeypatch, 10**9, 10**9)
    whole = gradients()
    _slice_lstms(monkeypatch, 7, 4)
    for got, want in zip(gradients(), whole):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("kernel", "stride"), [(16, 8), (16, 4), (2, 1), (16, 16), (5, 2)])
def test_decoder_equals_the_transposed_convolution(kernel, stride):
    from dnnsep.models.filterbanks import Decoder

    torch.manual_seed(0)
    decoder = Decoder(n_filters=6, kernel_size=kernel, stride=stride)
    w = torch.randn(3, 6, 41, requires_grad=True)
    want = torch.nn.functional.conv_transpose1d(w, decoder.conv.weight, stride=stride).squeeze(1)
    got = decoder(w)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    (grad_w,) = torch.autograd.grad(got.pow(2).sum(), w)
    (want_w,) = torch.autograd.grad(want.pow(2).sum(), w)
    torch.testing.assert_close(grad_w, want_w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("norm", ["gln", "cln"])
def test_inference_path_equals_the_autograd_path(norm):
    model = tiny(norm=norm, causal=norm == "cln")
    x = torch.randn(2, 3000)
    with torch.enable_grad():
        want = model(x)  # residual sums and norms out of place, as autograd needs them
    assert want.requires_grad
    with torch.inference_mode():
        got = model(x)  # in place, written straight into the next layout
    torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)


def test_cpu_autocast_keeps_the_lstms_in_its_own_thread():
    from dnnsep.models import lstm as dual_path

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert dual_path._pool_for_directions() is not None
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast is per thread: no pool under it
            assert dual_path._pool_for_directions() is None
    finally:
        torch.set_num_threads(threads)
