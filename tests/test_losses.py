"""SI-SDR against an independent float64 formula, and PIT for 2..5 sources."""

import itertools
import math

import numpy as np
import pytest
import torch

from dnnsep.losses import best_permutation, hungarian, pairwise_si_sdr, pit_si_sdr, reorder, si_sdr


def si_sdr_reference(est: np.ndarray, ref: np.ndarray) -> float:
    """The textbook definition (Le Roux et al., 2019), in float64, one signal at a time."""
    est = est.astype(np.float64) - est.mean()
    ref = ref.astype(np.float64) - ref.mean()
    target = np.dot(est, ref) / np.dot(ref, ref) * ref
    noise = est - target
    return 10 * np.log10(np.sum(target**2) / np.sum(noise**2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_si_sdr_matches_float64_reference(dtype):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 2, 16000))
    est = ref + rng.uniform(0.05, 3.0, size=(3, 2, 1)) * rng.standard_normal((3, 2, 16000)) + 0.3
    got = si_sdr(torch.tensor(est, dtype=dtype), torch.tensor(ref, dtype=dtype))
    assert got.shape == (3, 2) and got.dtype == dtype
    want = np.array([[si_sdr_reference(est[b, s], ref[b, s]) for s in range(2)] for b in range(3)])
    np.testing.assert_allclose(got.double().numpy(), want, atol=1e-4, rtol=0)
    assert np.ptp(want) > 10  # the test covers a wide range of scores


def test_si_sdr_is_invariant_to_gain_and_dc_offset():
    torch.manual_seed(0)
    ref, est = torch.randn(4, 8000), torch.randn(4, 8000)
    est = ref + 0.5 * est
    base = si_sdr(est, ref)
    torch.testing.assert_close(si_sdr(7.5 * est, ref), base, atol=1e-4, rtol=0)
    torch.testing.assert_close(si_sdr(0.01 * est + 3.0, ref), base, atol=1e-4, rtol=0)
    assert (si_sdr(est + 0.2 * torch.randn(4, 8000), ref) < base - 0.5).all()  # more noise is noticed


def test_perfect_estimate_scores_above_100_db():
    ref = torch.randn(2, 3, 16000)
    assert (si_sdr(ref.clone(), ref) > 100).all()
    assert (pit_si_sdr(ref.flip(1), ref).si_sdr > 100).all()


def test_silent_signals_give_finite_scores_and_gradients():
    est = torch.randn(2, 4000, requires_grad=True)
    silent = torch.zeros(2, 4000)
    for value in (si_sdr(est, silent), si_sdr(silent, est.detach()), si_sdr(silent, silent)):
        assert torch.isfinite(value).all()
    si_sdr(est, silent).sum().backward()
    assert torch.isfinite(est.grad).all()
    zero_est = torch.zeros(2, 4000, requires_grad=True)
    si_sdr(zero_est, torch.randn(2, 4000)).sum().backward()
    assert torch.isfinite(zero_est.grad).all()


def test_pairwise_matches_one_at_a_time():
    est, ref = torch.randn(2, 3, 1000), torch.randn(2, 3, 1000)
    pair = pairwise_si_sdr(est, ref)
    assert pair.shape == (2, 3, 3)
    for i, j in itertools.product(range(3), range(3)):
        torch.testing.assert_close(pair[:, i, j], si_sdr(est[:, i], ref[:, j]))


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_pit_recovers_every_permutation(n):
    torch.manual_seed(n)
    ref = torch.randn(1, n, 2000)
    noisy = ref + 0.3 * torch.randn(1, n, 2000)
    unpermuted = pit_si_sdr(noisy, ref)
    assert unpermuted.perm.tolist() == [list(range(n))]
    perms = list(itertools.permutations(range(n)))
    for p in perms if n <= 4 else perms[::7]:  # 120 permutations of 5: every 7th keeps the test quick
        est = noisy[:, list(p)]  # est[:, k] = noisy[:, p[k]]
        out = pit_si_sdr(est, ref)
        torch.testing.assert_close(out.loss, unpermuted.loss)
        torch.testing.assert_close(reorder(est, out.perm), noisy)
        assert out.perm.shape == (1, n) and out.perm.dtype == torch.long


def test_pit_loss_is_negative_mean_matched_si_sdr_and_differentiable():
    est = torch.randn(3, 2, 1000, requires_grad=True)
    ref = torch.randn(3, 2, 1000)
    out = pit_si_sdr(est, ref)
    torch.testing.assert_close(out.loss, -si_sdr(reorder(est, out.perm), ref).mean())
    out.loss.backward()
    assert est.grad is not None and torch.isfinite(est.grad).all()


@pytest.mark.parametrize("n", [2, 3, 4])
def test_exhaustive_and_hungarian_agree(n):
    scores = torch.randn(200, n, n, dtype=torch.float64)
    exhaustive = best_permutation(scores, method="exhaustive")
    hung = best_permutation(scores, method="hungarian")
    total = lambda perm: scores.gather(1, perm.unsqueeze(1)).squeeze(1).sum(-1)  # noqa: E731
    torch.testing.assert_close(total(hung), total(exhaustive))


def test_hungarian_matches_brute_force_for_six_sources():
    rng = np.random.default_rng(1)
    for _ in range(20):
        cost = rng.standard_normal((6, 6))
        brute = min(itertools.permutations(range(6)), key=lambda p: sum(cost[p[j], j] for j in range(6)))
        rows = hungarian(cost)
        assert sorted(rows.tolist()) == list(range(6))
        assert np.isclose(sum(cost[rows[j], j] for j in range(6)), sum(cost[brute[j], j] for j in range(6)))


@pytest.mark.parametrize(
    "est_shape, ref_shape",
    [((2, 2, 100), (2, 3, 100)), ((2, 100), (2, 100)), ((2, 2, 100), (2, 2, 99)), ((2, 0, 100), (2, 0, 100))],
)
def test_pit_rejects_wrong_shapes(est_shape, ref_shape):
    with pytest.raises(ValueError, match=r"\(batch, n_sources, time\)"):
        pit_si_sdr(torch.randn(est_shape), torch.randn(ref_shape))


def test_thresholded_si_sdr_caps_the_score_and_shrinks_gradients_as_stated():
    """SI-SDR_tau = 10 log10(|s_t|^2 / (|e|^2 + tau |s_t|^2)), tau = 10^(-thr/10): at most thr dB, and its
    gradient is the plain one times 1 / (1 + 10^((SI-SDR - thr) / 10))."""
    torch.manual_seed(0)
    ref = torch.randn(3, 4000, dtype=torch.float64)
    ref = ref - ref.mean(-1, keepdim=True)  # zero-mean, as si_sdr makes them
    noise = torch.randn(3, 4000, dtype=torch.float64)
    noise = noise - noise.mean(-1, keepdim=True)
    noise = noise - (noise * ref).sum(-1, keepdim=True) / ref.pow(2).sum(-1, keepdim=True) * ref  # orthogonal
    for plain_db in (10.0, 30.0, 45.0):
        est = ref + noise * 10 ** (-plain_db / 20) * ref.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True)
        est = est.clone().requires_grad_()
        plain = si_sdr(est, ref)
        torch.testing.assert_close(plain, torch.full((3,), plain_db, dtype=torch.float64), atol=1e-3, rtol=0)
        capped = si_sdr(est, ref, threshold_db=30.0)
        expected = 10 * math.log10(1 / (10 ** (-plain_db / 10) + 10 ** (-3)))
        torch.testing.assert_close(capped, torch.full((3,), expected, dtype=torch.float64), atol=1e-3, rtol=0)
        assert (capped <= 30.0 + 1e-9).all()
        (g_plain,) = torch.autograd.grad(plain.sum(), est)
        (g_capped,) = torch.autograd.grad(capped.sum(), est)
        ratio = g_capped.norm(dim=-1) / g_plain.norm(dim=-1)
        weight = 1 / (1 + 10 ** ((plain_db - 30.0) / 10))
        torch.testing.assert_close(ratio, torch.full((3,), weight, dtype=torch.float64), rtol=1e-3, atol=0)
    assert weight < 0.04  # 15 dB above the threshold: the example has all but stopped contributing
    out = pit_si_sdr(est.detach()[None, :2], ref[None, :2], threshold_db=30.0)
    assert out.loss.item() == pytest.approx(-expected, abs=1e-3)
