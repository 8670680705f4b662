"""gLN and cLN against their formulas, in float64, for the layouts the separator uses."""

import pytest
import torch

from dnnsep.models.norms import CumulativeLayerNorm, GlobalLayerNorm


def reference_gln(x, batch_dim):
    dims = [d for d in range(x.dim()) if d != batch_dim]
    mean = x.mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(dims, keepdim=True) + 1e-8)


def reference_cln(x, batch_dim, time_dim):
    steps = []
    for t in range(x.shape[time_dim]):
        seen = x.narrow(time_dim, 0, t + 1)
        steps.append(reference_gln(seen, batch_dim).narrow(time_dim, t, 1))
    return torch.cat(steps, time_dim)


def affine(norm):
    torch.manual_seed(1)
    with torch.no_grad():
        norm.gain.uniform_(0.5, 2)
        norm.bias.normal_()
    return norm.double()


@pytest.mark.parametrize("batch", [1, 3])  # batch 1 takes the vector-norm path
@pytest.mark.parametrize(("batch_dim", "time_dim"), [(2, 1), (2, 0)])
def test_global_layer_norm_equals_its_formula_and_gradcheck(batch, batch_dim, time_dim):
    norm = affine(GlobalLayerNorm(6))
    shape = [5, 4, 6]
    shape.insert(batch_dim, batch)
    x = (torch.randn(shape, dtype=torch.float64) * 3 + 1).requires_grad_()
    want = reference_gln(x, batch_dim) * norm.gain + norm.bias
    torch.testing.assert_close(norm(x, batch_dim=batch_dim, time_dim=time_dim), want)
    assert torch.autograd.gradcheck(lambda x: norm(x, batch_dim=batch_dim, time_dim=time_dim), (x,))


@pytest.mark.parametrize("batch", [1, 3])
def test_cumulative_layer_norm_equals_its_formula_and_gradcheck(batch):
    norm = affine(CumulativeLayerNorm(6))
    x = (torch.randn(5, 4, batch, 6, dtype=torch.float64) * 3 + 1).requires_grad_()
    want = reference_cln(x, 2, 1) * norm.gain + norm.bias
    torch.testing.assert_close(norm(x, batch_dim=2, time_dim=1), want)
    assert torch.autograd.gradcheck(lambda x: norm(x, batch_dim=2, time_dim=1), (x,))


@pytest.mark.parametrize("kind", [GlobalLayerNorm, CumulativeLayerNorm])
def test_scale_and_shift_give_the_norm(kind):
    norm = affine(kind(6))
    x = torch.randn(5, 4, 2, 6, dtype=torch.float64)
    scale, shift = norm.scale_shift(x, batch_dim=2, time_dim=1)
    torch.testing.assert_close(x * scale + shift, norm(x, batch_dim=2, time_dim=1))
