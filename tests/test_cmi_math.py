"""Closed-form checks of the CMI math in cmi/core.py (eqs. 9, 11, 12)."""
import math

import pytest
import torch

from cmi.core import (CMIStats, class_centroids, conditional_mutual_information, feature_distribution, kl_divergence,
                      log_feature_distribution)
from cmi.example import H, Y, cmi_from_joint, main, scaled_around_class_means, three_ways


def random_case(n=12, d=5, c=3, seed=0, sharp=2.0):
    g = torch.Generator().manual_seed(seed)
    f = feature_distribution(sharp * torch.randn(n, d, generator=g, dtype=torch.float64))
    y = torch.arange(n) % c  # every class present
    y = y[torch.randperm(n, generator=g)]
    return f, y, c


def test_kl_zero_for_identical_and_positive_otherwise():
    p = feature_distribution(torch.randn(4, 7))
    q = feature_distribution(torch.randn(4, 7))
    torch.testing.assert_close(kl_divergence(p, p), torch.zeros(4))
    assert (kl_divergence(p, q) > 0).all()
    # 0 log 0 = 0: a one-hot p against a full q is -log q at the hot index
    one_hot = torch.eye(7)[:4]
    torch.testing.assert_close(kl_divergence(one_hot, q), -q[torch.arange(4), torch.arange(4)].log())


def test_cmi_zero_when_each_class_is_one_point():
    centers = feature_distribution(torch.randn(3, 6))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 2, 2])
    f = centers[y]
    cmi = conditional_mutual_information(f, y, class_centroids(f, y, 3))
    assert abs(cmi.item()) < 1e-7


@pytest.mark.parametrize("seed", range(5))
def test_cmi_equals_brute_force_joint_table(seed):
    f, y, c = random_case(n=10, d=4, c=3, seed=seed)
    ours = conditional_mutual_information(f, y, class_centroids(f, y, c)).item()
    assert ours == pytest.approx(cmi_from_joint(f, y), abs=1e-12)
    assert ours > 0


def test_one_hot_features_give_conditional_entropy():
    # f_x one-hot: H(Z|X,Y) = 0, so I(X;Z|Y) = H(Z|Y) = sum_y P(y) H(g_y)
    z = torch.tensor([0, 1, 1, 2, 0, 0, 3, 3, 3])
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])
    f = torch.eye(4, dtype=torch.float64)[z]
    h0 = -(0.25 * math.log(0.25) + 0.5 * math.log(0.5) + 0.25 * math.log(0.25))  # class 0: z = 0, 1, 1, 2
    h1 = -(0.4 * math.log(0.4) + 0.6 * math.log(0.6))  # class 1: z = 0, 0, 3, 3, 3
    expected = 4 / 9 * h0 + 5 / 9 * h1
    assert conditional_mutual_information(f, y, class_centroids(f, y, 2)).item() == pytest.approx(expected, abs=1e-12)


def test_class_means_minimise_the_kl_sum():
    # the identity behind eq. (14): G = class means is the argmin of sum_x KL(f_x || G_y)
    f, y, c = random_case(seed=3)
    means = class_centroids(f, y, c)
    best = conditional_mutual_information(f, y, means)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        other = feature_distribution(means.log() + 0.05 * torch.randn(means.shape, generator=g, dtype=torch.float64))
        assert conditional_mutual_information(f, y, other) > best


def test_weightings_balanced_vs_true_vs_eq12():
    f, y, c = random_case(n=12, d=5, c=3, seed=1)  # balanced: 4 per class
    g = class_centroids(f, y, c)
    true = conditional_mutual_information(f, y, g, "true")
    torch.testing.assert_close(conditional_mutual_information(f, y, g, "balanced"), true)
    torch.testing.assert_close(conditional_mutual_information(f, y, g, "eq12"), true * 12 / 3)

    y = torch.tensor([0] * 8 + [1] * 3 + [2])  # unbalanced
    g = class_centroids(f, y, c)
    per_class = torch.stack([kl_divergence(f[y == k], g[k]).mean() for k in range(c)])
    p_y = torch.tensor([8, 3, 1], dtype=torch.float64) / 12
    torch.testing.assert_close(conditional_mutual_information(f, y, g, "true"), (p_y * per_class).sum())
    torch.testing.assert_close(conditional_mutual_information(f, y, g, "balanced"), per_class.mean())
    torch.testing.assert_close(conditional_mutual_information(f, y, g, "eq12"), (p_y * per_class).sum() * 12 / 3)
    assert not torch.isclose(per_class.mean(), (p_y * per_class).sum())


def test_order_invariance():
    f, y, c = random_case(seed=2)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    a = conditional_mutual_information(f, y, class_centroids(f, y, c))
    b = conditional_mutual_information(f[perm], y[perm], class_centroids(f[perm], y[perm], c))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("weighting", ["true", "balanced", "eq12"])
def test_one_pass_stats_equal_two_pass_cmi(weighting):
    f, y, c = random_case(n=30, d=6, c=4, seed=4)
    y[y == 3] = 0  # class 3 empty: its centroid is uniform and it drops out of the balanced average
    stats = CMIStats(c, 6)
    for chunk in torch.arange(30).split(7):
        stats.add(f[chunk], y[chunk])
    g = class_centroids(f, y, c)
    torch.testing.assert_close(stats.centroids(), g.float())
    torch.testing.assert_close(g[3], torch.full((6,), 1 / 6, dtype=torch.float64))
    assert stats.cmi(weighting) == pytest.approx(conditional_mutual_information(f, y, g, weighting).item(), abs=1e-12)


def test_feature_distribution_is_float32_under_half_inputs_and_tau_sharpens():
    h = torch.randn(3, 8).bfloat16()
    f = feature_distribution(h)
    assert f.dtype == torch.float32
    torch.testing.assert_close(f.sum(-1), torch.ones(3))
    entropy = lambda p: -(p * p.log()).sum(-1)
    assert (entropy(feature_distribution(h, tau=0.5)) < entropy(f)).all()


def test_unknown_weighting_is_an_error():
    f, y, c = random_case()
    with pytest.raises(ValueError, match="weighting"):
        conditional_mutual_information(f, y, class_centroids(f, y, c), "paper")


def test_worked_example_three_ways_agree_and_track_cluster_spread(capsys):
    library, joint, kl = three_ways(H, Y)
    assert library == pytest.approx(joint, abs=1e-12) and library == pytest.approx(kl, abs=1e-12)
    values = [three_ways(scaled_around_class_means(H, Y, k), Y)[0] for k in (0.0, 0.5, 1.0, 1.5)]
    assert values[0] == pytest.approx(0, abs=1e-12) and values == sorted(values)
    main()
    assert f"{library:.12f}" in capsys.readouterr().out


def outlier_features(tau, n=16, d=32, seed=0):
    """h_s like the raw [CLS] state: small values and outlier dimensions (docs/design.md, "h_s: pooled or
    [CLS]"). Dimensions 3 and 5 are outliers within a few tau of each other, so f_x = softmax(h / tau) shares
    its mass between them and is exactly 0 elsewhere: saturated, yet with a gradient."""
    g = torch.Generator().manual_seed(seed)
    h = 0.3 * torch.randn(n, d, generator=g)
    h[:, 3] += 12.0
    h[:, 5] = h[:, 3] + tau * torch.randn(n, generator=g) + tau * (torch.arange(n) % 2)
    return h, torch.arange(n) % 2


@pytest.mark.parametrize("tau", [0.1, 0.02, 0.005])
@pytest.mark.parametrize("policy", ["stale", "batch"])
def test_saturated_features_give_a_finite_cmi_and_finite_gradients(tau, policy):
    h, y = outlier_features(tau)
    h.requires_grad_(True)
    log_f = log_feature_distribution(h, tau)
    f = log_f.exp()
    assert (f == 0).any()  # saturated: exact zeros, where xlogy(f, f) has a 0/0 gradient
    if policy == "stale":  # G from other features, with exact zeros of its own where f has mass
        other, _ = outlier_features(tau, seed=1)
        G = class_centroids(feature_distribution(other.roll(1, dims=1), tau), y, 2)
        assert (G == 0).any()
    else:
        G = class_centroids(f.detach(), y, 2)
    cmi = conditional_mutual_information(f, y, G, log_f=log_f)
    cmi.backward()
    print(f"tau {tau}, {policy} centroids: CMI {cmi.item():.4g}, |grad| {h.grad.norm():.3g}")
    assert torch.isfinite(cmi) and torch.isfinite(h.grad).all() and h.grad.abs().max() > 0
    # the old formula: value finite, gradient NaN (the bug this guards against)
    h.grad = None
    f = feature_distribution(h, tau)
    (torch.xlogy(f, f) - torch.xlogy(f, G[y])).sum(-1).mean().backward()
    assert torch.isnan(h.grad).any()


@pytest.mark.parametrize("seed", range(3))
def test_log_probability_path_equals_the_joint_table(seed):
    g = torch.Generator().manual_seed(seed)
    h = 2.0 * torch.randn(10, 4, generator=g, dtype=torch.float64)
    y = torch.arange(10) % 3
    f, log_f = feature_distribution(h), log_feature_distribution(h)
    ours = conditional_mutual_information(f, y, class_centroids(f, y, 3), log_f=log_f).item()
    assert ours == pytest.approx(cmi_from_joint(f, y), abs=1e-12)


def test_a_centroid_zero_where_f_has_mass_is_a_large_finite_penalty():
    # the true KL is +inf; the floor at the smallest normal float makes it p log p - p log(tiny)
    p = torch.tensor([[0.5, 0.5, 0.0]])
    q = torch.tensor([[1.0, 0.0, 0.0]])
    expected = 0.5 * math.log(0.5) + 0.5 * (math.log(0.5) - math.log(torch.finfo(torch.float32).tiny))
    assert kl_divergence(p, q).item() == pytest.approx(expected, rel=1e-6)
    assert 40 < expected < 50
