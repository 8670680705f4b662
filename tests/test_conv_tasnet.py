"""Conv-TasNet: shapes, size, causality, every option, bad configs, checkpoints, and the fast ops."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import dnnsep.models
from dnnsep.models import ConvTasNet, ConvTasNetConfig
from dnnsep.models.conv_ops import depthwise_conv, prelu
from dnnsep.models.tcn import ConvBlock, _norm

TINY = dict(
    n_filters=16, kernel_size=8, bottleneck=8, hidden=16, conv_kernel=3, n_layers=2, n_repeats=1, skip_channels=8
)


def tiny(**changes) -> ConvTasNet:
    torch.manual_seed(0)
    return ConvTasNet(ConvTasNetConfig(**{**TINY, **changes})).eval()


@pytest.mark.parametrize("mask", ["sigmoid", "relu", "softmax"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kernel_size", [4, 8])
def test_output_length_equals_input_length(mask, batch, kernel_size):
    model = tiny(mask=mask, n_sources=3, kernel_size=kernel_size)
    for length in (1, 7, 799, 16000, 16001):
        with torch.no_grad():
            out = model(torch.randn(batch, length))
        assert out.shape == (batch, 3, length)
        assert torch.isfinite(out).all()


def test_default_config_is_the_paper_and_its_size_is_pinned():
    config = ConvTasNetConfig()
    assert (config.n_filters, config.kernel_size, config.stride, config.bottleneck, config.hidden) == (
        512,
        16,
        8,
        128,
        512,
    )
    assert (config.conv_kernel, config.n_layers, config.n_repeats, config.skip_channels) == (3, 8, 3, 128)
    assert (config.mask, config.norm, config.causal) == ("sigmoid", "gln", False)
    model = ConvTasNet()
    # asteroid 0.7's ConvTasNet with these sizes has 5,050,545: 65,664 more, the last block's residual
    # conv (512 * 128 + 128), whose output nothing reads
    assert sum(p.numel() for p in model.parameters()) == 4_984_881
    assert [b.depthwise.dilation[0] for b in model.separator.blocks[:9]] == [1, 2, 4, 8, 16, 32, 64, 128, 1]
    assert model.separator.blocks[-1].out_conv.out_channels == 128  # skip only
    assert model.separator.blocks[0].out_conv.out_channels == 256  # residual and skip


def test_mask_nonlinearities():
    w = torch.rand(2, 16, 500)
    for mask, check in [
        ("softmax", lambda m: torch.allclose(m.sum(1), torch.ones_like(m.sum(1)))),  # across sources
        ("sigmoid", lambda m: bool(((m > 0) & (m < 1)).all())),
        ("relu", lambda m: bool((m >= 0).all()) and bool((m == 0).any())),
    ]:
        masks = tiny(mask=mask, n_sources=3).separator(w)
        assert masks.shape == (2, 3, 16, 500) and check(masks), mask


def perturbation_reach(model: ConvTasNet, t0: int, length: int = 4000) -> torch.Tensor:
    """Largest change of each output sample when the input changes from sample t0 on."""
    torch.manual_seed(1)
    x = torch.randn(1, length)
    y = x.clone()
    y[:, t0:] += torch.randn(1, length - t0)
    with torch.no_grad():
        return (model(x) - model(y)).abs().amax(dim=(0, 1))  # (time,)


CAUSAL = dict(causal=True, n_layers=4, n_repeats=2, kernel_size=16)  # dilations up to 8, 8 blocks


def test_causal_model_does_not_look_further_ahead_than_its_latency():
    model = tiny(**CAUSAL)
    latency = model.config.latency
    assert latency == 15  # the window's last sample, L - 1 after its first
    reach = []
    for t0 in range(3000, 3008):  # every alignment of t0 to the hop of 8
        change = perturbation_reach(model, t0)
        assert change[: t0 - latency].max() < 1e-6  # nothing before t0 - latency moves
        assert change[t0:].min() > 0  # while the perturbed part does
        reach.append(t0 - int((change > 1e-6).nonzero()[0]))
    assert max(reach) == latency  # and the latency is tight


def test_non_causal_model_fails_the_causality_check():
    model = tiny(**{**CAUSAL, "causal": False, "norm": "cln"})  # look-ahead from the convolutions alone
    change = perturbation_reach(model, 3000)
    assert change[: 3000 - model.config.latency].max() > 1e-3  # the same check catches look-ahead
    model = tiny(**{**CAUSAL, "causal": False})  # and from gLN
    change = perturbation_reach(model, 3000)
    assert change[:1000].max() > 1e-3


OPTION_CHANGES = {
    "n_filters": 24,
    "kernel_size": 4,
    "stride": 2,
    "bottleneck": 12,
    "hidden": 24,
    "conv_kernel": 5,
    "n_layers": 3,
    "n_repeats": 2,
    "skip_channels": 4,
    "n_sources": 3,
    "mask": "relu",
    "norm": "cln",
    "causal": True,
    "encoder_activation": "linear",
    "signal_padding": "none",
    "sample_rate": 8000,
}


def shapes(model):
    return [tuple(p.shape) for p in model.state_dict().values()]


def directory_names(config: ConvTasNetConfig) -> tuple[str, ...]:
    """The parts of the experiment directory the model's config names (training.config.experiment_dir):
    ``<n>mix`` and ``<encoder>-<decoder>`` name n_sources and encoder_activation, dir_names() the rest."""
    return (f"{config.n_sources}mix", config.filterbank_name(), *config.dir_names())


@pytest.mark.parametrize("name", sorted(OPTION_CHANGES))
def test_every_option_changes_the_directory_name(name):
    base, other = ConvTasNetConfig(**TINY), ConvTasNetConfig(**{**TINY, name: OPTION_CHANGES[name]})
    assert getattr(other, name) != getattr(base, name)
    assert directory_names(other) != directory_names(base), f"{name} leaves the experiment directory as it is"
    if name not in ("n_sources", "encoder_activation"):
        assert other.dir_names() != base.dir_names()


@pytest.mark.parametrize("name", sorted(set(OPTION_CHANGES) - {"sample_rate"}))
def test_every_option_changes_the_network(name):
    base, other = tiny(), tiny(**{name: OPTION_CHANGES[name]})
    x = torch.randn(2, 3000)
    with torch.no_grad():
        differs = shapes(base) != shapes(other) or not torch.allclose(base(x), other(x))
    assert differs, f"{name} changes nothing in the model"


def test_every_config_field_is_covered_by_the_option_tests():
    assert {f.name for f in dataclasses.fields(ConvTasNetConfig)} == set(OPTION_CHANGES)
    # sample_rate is the input's rate: checked by audio I/O, and the network is the same


@pytest.mark.parametrize(
    "changes, option",
    [
        (dict(n_layers=0), "n_layers"),
        (dict(n_repeats=0), "n_repeats"),
        (dict(bottleneck=0), "bottleneck"),
        (dict(hidden=0), "hidden"),
        (dict(skip_channels=0), "skip_channels"),
        (dict(conv_kernel=0), "conv_kernel"),
        (dict(norm="batch"), "norm"),
        (dict(mask="tanh"), "mask"),
        (dict(causal=True, norm="gln"), "norm"),
        (dict(kernel_size=1), "kernel_size"),
        (dict(stride=20), "stride"),
        (dict(n_layers=2.0), "n_layers"),
    ],
)
def test_invalid_configs_name_the_option(changes, option):
    with pytest.raises(ValueError, match=rf"\b{option}\b"):
        ConvTasNetConfig(**{**TINY, **changes})


def test_checkpoint_round_trip_gives_identical_output(tmp_path):
    model = tiny(causal=True, mask="softmax", n_sources=3)
    path = tmp_path / "model.pth"
    model.save(path)
    ckpt = torch.load(path, weights_only=True)  # plain values only
    assert set(ckpt) == {"model_name", "model_args", "state_dict"}
    loaded = dnnsep.models.load(path).eval()
    assert type(loaded) is ConvTasNet and loaded.config == model.config
    x = torch.randn(2, 5000)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def reference_block(block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
    """The paper's block written plainly: torch's convs, PReLU and an explicitly padded copy."""
    y = _norm(block.norm_in, F.prelu(block.in_conv(x), block.prelu_in.weight))
    pad = (block.depthwise.kernel_size[0] - 1) * block.depthwise.dilation[0]
    y = block.depthwise(F.pad(y, (block.left, pad - block.left)))  # causal: all on the left
    return block.out_conv(_norm(block.norm_out, F.prelu(y, block.prelu_out.weight)))


@pytest.mark.parametrize("norm, causal", [("gln", False), ("cln", False), ("cln", True)])
@pytest.mark.parametrize("kernel, dilation, frames", [(3, 1, 50), (3, 4, 5), (2, 2, 9), (4, 1, 1), (1, 1, 7)])
def test_block_with_folded_norms_equals_the_plain_block(norm, causal, kernel, dilation, frames):
    torch.manual_seed(0)
    block = ConvBlock(
        bottleneck=4, hidden=6, skip_channels=3, kernel=kernel, dilation=dilation, norm=norm, causal=causal
    )
    block = block.double()
    for p in block.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, 4, frames, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(block(x), reference_block(block, x))
    grads = torch.autograd.grad(block(x).square().sum(), [x, *block.parameters()])
    want = torch.autograd.grad(reference_block(block, x).square().sum(), [x, *block.parameters()])
    for got, expected in zip(grads, want):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(
    "kernel, dilation, left, frames, weight_batch", [(3, 2, 2, 9, 2), (3, 2, 4, 9, 1), (2, 2, 1, 5, 1), (3, 4, 4, 3, 2)]
)
def test_depthwise_conv_equals_conv1d_and_passes_gradcheck(kernel, dilation, left, frames, weight_batch):
    torch.manual_seed(0)
    y = torch.randn(2, 3, frames, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(weight_batch, 3, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(weight_batch, 3, 1, dtype=torch.float64, requires_grad=True)
    tap_bias = torch.randn(2, 3, kernel, dtype=torch.float64, requires_grad=True)
    pad = (kernel - 1) * dilation
    padded = F.pad(y, (left, pad - left)).view(1, 6, frames + pad)  # (1, batch * channels, frames + pad)
    want = F.conv1d(
        padded,
        weight.expand(2, -1, -1).reshape(6, 1, kernel),
        bias.expand(2, -1, -1).reshape(6),
        dilation=dilation,
        groups=6,
    )
    torch.testing.assert_close(depthwise_conv(y, weight, bias, dilation=dilation, left=left), want.view(2, 3, frames))
    conv = lambda *args: depthwise_conv(*args[:3], dilation=dilation, left=left, tap_bias=args[3])  # noqa: E731
    assert torch.autograd.gradcheck(conv, (y, weight, bias, tap_bias))


def test_prelu_equals_torch_and_passes_gradcheck():
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    slope = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(prelu(x, slope), F.prelu(x, slope))
    assert torch.autograd.gradcheck(prelu, (x, slope))


@pytest.mark.parametrize("dilation", [1, 2, 4])
@pytest.mark.parametrize("causal", [False, True])
def test_the_exporters_depthwise_conv_equals_the_fast_one(dilation, causal):
    """What torch.export and tracing see (conv1d, batch folded into groups) computes the same function."""
    from dnnsep.models import conv_ops

    torch.manual_seed(0)
    y, w, b, tap_bias = torch.randn(2, 5, 37), torch.randn(2, 5, 3), torch.randn(2, 5, 1), torch.randn(1, 5, 3)
    left = 2 * dilation if causal else dilation
    fast = conv_ops.depthwise_conv(y, w, b, dilation=dilation, left=left, tap_bias=tap_bias)
    plain = conv_ops._depthwise_plain(y, w, b, tap_bias, dilation, left)
    torch.testing.assert_close(plain, fast, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True], ids=["gln", "cln"])
def test_trains_under_cpu_bfloat16_autocast_with_float32_gradients(causal):
    """``amp: true`` on a CPU with bfloat16: the depthwise conv's own backward meets bfloat16 activations."""
    torch.manual_seed(0)
    model = tiny(**(CAUSAL if causal else {}))
    x = torch.randn(2, 800)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    loss = y.float().pow(2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    reference = tiny(**(CAUSAL if causal else {}))
    reference.load_state_dict(model.state_dict())
    reference(x).float().pow(2).mean().backward()  # float32: the same gradient, to bfloat16's precision
    got, want = torch.cat([g.flatten() for g in grads]), torch.cat([p.grad.flatten() for p in reference.parameters()])
    assert F.cosine_similarity(got, want, dim=0) > 0.99


@pytest.mark.parametrize("causal", [False, True], ids=["gln", "cln"])
def test_every_gradient_has_its_parameters_strides(causal):
    """DDP copies each gradient into a bucket laid out like its parameter, and warns when they differ."""
    torch.manual_seed(0)
    model = tiny(**(CAUSAL if causal else {}))
    model(torch.randn(2, 800)).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad.stride() == p.stride(), name
