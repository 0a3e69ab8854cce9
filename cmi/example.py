"""A worked example: the CMI of a hand-made set of feature vectors, computed three ways.

    python -m cmi.example

Six inputs x in two classes y, each with a feature vector h_x over d = 4 dimensions. The model's feature
distribution is f_x = softmax(h_x), read as P(z | x): the dimension z "fires" for x with that
probability. With P(x) = 1/N and y a function of x, the joint distribution is P(x, y, z) = (1/N) f_x(z), and

    I(X;Z|Y) = sum_{x,y,z} P(x,y,z) log [ P(x,y,z) P(y) / (P(x,y) P(y,z)) ]          (the definition)
             = sum_y P(y) mean_{x in y} KL(f_x || g_y),  g_y = mean_{x in y} f_x     (eqs. 9, 11)

which the library computes as `conditional_mutual_information(f, y, class_centroids(f, y, C))`. The number
measures how spread out each class's cluster of feature distributions is around its centroid: min-CMI
tightens the clusters, max-CMI spreads them.
"""
import math

import torch

from cmi.core import class_centroids, conditional_mutual_information, feature_distribution

H = torch.tensor(
    [  # class 0: the first two dimensions fire
        [2.0, 1.0, 0.0, 0.0],
        [1.5, 1.5, 0.0, 0.5],
        [1.0, 2.0, 0.5, 0.0],
        # class 1: the last two
        [0.0, 0.0, 2.0, 1.0],
        [0.5, 0.0, 1.0, 2.0],
        [0.0, 0.5, 1.5, 1.5],
    ],
    dtype=torch.float64,
)
Y = torch.tensor([0, 0, 0, 1, 1, 1])


def cmi_from_joint(f: torch.Tensor, y: torch.Tensor) -> float:
    """I(X;Z|Y) from the explicit joint table P(x, y, z) = (1/N) [y = y_x] f_x(z), by its definition."""
    n, d = f.shape
    c = int(y.max()) + 1
    joint = torch.zeros(n, c, d, dtype=torch.float64)
    joint[torch.arange(n), y] = f.double() / n  # (N, C, Z)
    p_y, p_xy, p_yz = joint.sum((0, 2)), joint.sum(2), joint.sum(0)
    total = 0.0
    for x in range(n):
        for k in range(c):
            for z in range(d):
                p = joint[x, k, z].item()
                if p > 0:
                    total += p * math.log(p * p_y[k].item() / (p_xy[x, k].item() * p_yz[k, z].item()))
    return total


def cmi_from_kl(f: torch.Tensor, y: torch.Tensor) -> float:
    """sum_y P(y) mean_{x in y} KL(f_x || g_y), written out with plain loops."""
    total = 0.0
    for k in y.unique().tolist():
        members = f[y == k].double()
        g = members.mean(0)
        kls = [sum(p * math.log(p / q) for p, q in zip(fx.tolist(), g.tolist()) if p > 0) for fx in members]
        total += len(members) / len(y) * sum(kls) / len(kls)
    return total


def cmi_by_library(f: torch.Tensor, y: torch.Tensor) -> float:
    """I(X;Z|Y) of f (N, d) with labels y (N,) as the library computes it (eqs. 9, 11)."""
    return conditional_mutual_information(f, y, class_centroids(f, y, int(y.max()) + 1)).item()


def three_ways(h: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """The CMI of the features h (N, d) with labels y (N,): by the library, the joint table, the KL formula."""
    f = feature_distribution(h)
    return cmi_by_library(f, y), cmi_from_joint(f, y), cmi_from_kl(f, y)


def scaled_around_class_means(h: torch.Tensor, y: torch.Tensor, factor: float) -> torch.Tensor:
    """Move every h_x towards (factor < 1) or away from (factor > 1) its class mean."""
    means = torch.stack([h[y == k].mean(0) for k in range(int(y.max()) + 1)])[y]
    return means + factor * (h - means)


def main() -> None:
    """Print the three numbers, then the CMI as the clusters tighten and spread."""
    print("I(X;Z|Y) of the six hand-made feature vectors, three ways:")
    for name, value in zip(("library", "joint table", "KL formula"), three_ways(H, Y)):
        print(f"  {name:<12} {value:.12f}")
    print("clusters tightened (factor < 1) or spread (factor > 1) around their class means:")
    for factor in (0.0, 0.5, 1.0, 1.5, 2.0):
        print(f"  factor {factor:3.1f}  I(X;Z|Y) = {three_ways(scaled_around_class_means(H, Y, factor), Y)[0]:.6f}")


if __name__ == "__main__":
    main()
