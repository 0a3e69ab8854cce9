"""The CMI math of the paper on tensors: feature distributions, class centroids, I(X;Z|Y).

Shapes: N samples, C classes, d feature dimensions (the hidden size).

Everything here runs in float32 (or float64 if given float64) even inside a bf16 autocast region: the term is a
difference of nearly equal entropies (on real features f_x is almost uniform, CMI ~ 1e-3 nats), which bf16's
8-bit mantissa cannot resolve.
"""
import torch
import torch.nn.functional as F

WEIGHTINGS = ("true", "balanced", "eq12")


def feature_distribution(h: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """f_x = softmax(h_s / tau) over the d feature dimensions: (N, d) -> (N, d), rows sum to 1.

    tau = 1 is the paper; tau < 1 sharpens f_x so the CMI term matters (an extension, see docs/design.md)."""
    return F.softmax(_full(h) / tau, dim=-1)


def log_feature_distribution(h: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """log f_x = log_softmax(h_s / tau): (N, d) -> (N, d), finite for every tau > 0 even where f_x itself
    underflows to exactly 0 (raw [CLS] states have outlier dimensions; tau 0.1 or below saturates f_x)."""
    return F.log_softmax(_full(h) / tau, dim=-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, log_p: torch.Tensor | None = None) -> torch.Tensor:
    """KL(p || q) = sum_z p_z (log p_z - log q_z) per row: (N, d), (N, d) or (d,) -> (N,). 0 log 0 = 0.

    Pass `log_p` (log_feature_distribution) when p is a softmax: the gradient of p log p is then
    p (log p + 1), finite where p underflows to 0, while xlogy(p, p)'s is 0/0 = NaN there.
    A centroid q with an exact 0 where p has mass makes the true KL +inf (a stale G whose class never put mass
    on that dimension). We floor q at the smallest normal float instead: the KL stays finite (p_z log p_z + 87
    nats per unit of p_z in float32, a large but finite penalty whose min-CMI gradient pushes the mass back), so
    one saturated dimension cannot turn the loss into inf or NaN."""
    p, q = _full(p), _full(q)
    log_p = _log(p) if log_p is None else _full(log_p)
    return (p * (log_p - _log(q))).sum(-1)


def class_centroids(f: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """eq. (9): g_y = mean of f_x over the samples with label y: (N, d), (N,) -> (C, d).

    Differentiable, but the gradient of sum_x KL(f_x || g_y) through the class means is exactly zero (the
    mean minimises it over g, and f_x sums to 1), so callers may detach it. A class with no sample gets the
    uniform distribution, so a KL against it stays finite; no sample ever reads it."""
    return _means(*_class_sums(_full(f), y, num_classes))


def conditional_mutual_information(
    f: torch.Tensor, y: torch.Tensor, centroids: torch.Tensor, weighting: str = "true",
    log_f: torch.Tensor | None = None,
) -> torch.Tensor:
    """The CMI estimate sum over samples of KL(f_x || G_y), weighted three ways (a scalar):

    - "true" (default): I(X;Z|Y) = sum_y P(y) mean_{x in y} KL(f_x || g_y) = (1/N) sum_x KL(f_x || g_{y_x}),
      the conditional mutual information of eq. (11) with P(y) the empirical class frequencies;
    - "balanced": (1/C) sum_y mean_{x in y} KL(f_x || g_y), every class weighted equally (classes with no
      sample are left out of the average);
    - "eq12": eq. (12) taken literally, (1/C) sum_x KL(f_x || g_{y_x}) = (N/C) * "true"; it grows with N.

    With `centroids` the class means of `f` this is exact; with stale centroids it is an upper bound of the
    CMI (the class means minimise sum_x KL(f_x || G_y) over G) -- the identity behind eq. (14).
    `log_f`: log f_x from log_feature_distribution, for exact logs where f_x saturates (see kl_divergence)."""
    kl = kl_divergence(f, centroids[y], log_f)  # (N,)
    kl_sums, counts = _class_sums(kl[:, None], y, centroids.shape[0])
    return _weigh(kl_sums[:, 0], counts, weighting)


class CMIStats:
    """Running per-class sums over a whole split, for the exact CMI and the centroids in one pass.

    Since mean_{x in y} KL(f_x || g_y) = H(g_y) - mean_{x in y} H(f_x) when g_y is the class mean, the exact
    CMI I(X;Z|Y) = H(Z|Y) - H(Z|X,Y) needs only the per-class sums of f_x and of f_x log f_x: one pass over
    the data, no second pass with the finished centroids. Sums are float64; under torch.distributed they are
    all-reduced so every process holds the global numbers."""

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu"):
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)
        self.neg_entropy = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.counts = torch.zeros(num_classes, dtype=torch.float64, device=device)

    @torch.no_grad()
    def add(self, f: torch.Tensor, y: torch.Tensor) -> None:
        """Accumulate a batch of feature distributions f (B, d) with labels y (B,)."""
        f = f.detach().double()
        self.sums.index_add_(0, y, f)
        self.neg_entropy.index_add_(0, y, torch.xlogy(f, f).sum(-1))
        self.counts.index_add_(0, y, torch.ones_like(y, dtype=torch.float64))

    def all_reduce(self) -> None:
        """Sum the statistics of all processes (a no-op outside torch.distributed)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for t in (self.sums, self.neg_entropy, self.counts):
                torch.distributed.all_reduce(t)

    def centroids(self) -> torch.Tensor:
        """The class means g_y (C, d) in float32; uniform for a class with no sample."""
        return _means(self.sums, self.counts).float()

    def cmi(self, weighting: str = "true") -> float:
        """The exact CMI of everything added, against its own class means (weightings as above)."""
        g = _means(self.sums, self.counts)
        kl_sums = self.counts * -torch.xlogy(g, g).sum(-1) + self.neg_entropy  # sum_{x in y} KL(f_x || g_y)
        return _weigh(kl_sums, self.counts, weighting).item()


def _full(t: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (autocast outputs) are promoted to float32; float64 stays float64."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _log(p: torch.Tensor) -> torch.Tensor:
    """log p with p floored at the smallest normal float: finite value and gradient where p is 0."""
    return p.clamp_min(torch.finfo(p.dtype).tiny).log()


def _means(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Class means from per-class sums (C, d) and counts (C,); uniform rows for empty classes."""
    uniform = torch.full_like(sums, 1.0 / sums.shape[-1])
    return torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], uniform)


def _weigh(kl_sums: torch.Tensor, counts: torch.Tensor, weighting: str) -> torch.Tensor:
    """Combine per-class sums of KL(f_x || g_y) (C,) into the CMI under one of WEIGHTINGS."""
    if weighting == "true":
        return kl_sums.sum() / counts.sum()
    if weighting == "eq12":
        return kl_sums.sum() / len(counts)
    if weighting == "balanced":
        present = counts > 0
        return (kl_sums[present] / counts[present]).mean()
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def _class_sums(values: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums of the rows of values (N, k) and the class counts: -> (C, k), (C,)."""
    sums = values.new_zeros(num_classes, values.shape[-1]).index_add(0, y, values)
    counts = values.new_zeros(num_classes).index_add(0, y, torch.ones_like(y, dtype=values.dtype))
    return sums, counts
