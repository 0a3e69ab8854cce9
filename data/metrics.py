"""GLUE metrics from the confusion matrix, as fractions (0.8 for 80%), defined in every degenerate case."""

import numpy as np

from data.tasks import Task, metric_suffix


def confusion_matrix(preds: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """C[i, j] = number of examples with label i predicted as j."""
    preds, labels = np.asarray(preds, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if preds.shape != labels.shape or preds.ndim != 1 or len(labels) == 0:
        raise ValueError(f"need two non-empty 1-d arrays of equal length, got shapes {preds.shape} and {labels.shape}")
    k = num_classes or int(max(preds.max(), labels.max())) + 1
    return np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of predictions (N,) equal to the labels (N,)."""
    c = confusion_matrix(preds, labels)
    return float(np.trace(c) / c.sum())


def f1(preds: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of the positive class 1: 2TP / (2TP + FP + FN); 0 when there is no positive anywhere."""
    c = confusion_matrix(preds, labels, num_classes=2)
    tp, fp, fn = c[1, 1], c[0, 1], c[1, 0]
    return float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


def f1_macro(preds: np.ndarray, labels: np.ndarray) -> float:
    """The mean of each class's F1 (one against the rest) over the classes that occur among the labels or the
    predictions, as scikit-learn's f1_score(average="macro") takes them."""
    c = confusion_matrix(preds, labels)
    denominator = c.sum(axis=0) + c.sum(axis=1)  # 2TP + FP + FN, per class
    seen = denominator > 0
    return float(np.mean(2 * np.diag(c)[seen] / denominator[seen]))


def matthews_corrcoef(preds: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation (multiclass form, Gorodkin 2004); 0 when either side has a single class, where
    the formula reads 0/0 (a model predicting one class everywhere has no correlation with the labels)."""
    c = confusion_matrix(preds, labels).astype(np.float64)
    n, correct = c.sum(), np.trace(c)
    true, pred = c.sum(axis=1), c.sum(axis=0)
    denominator = np.sqrt((n * n - pred @ pred) * (n * n - true @ true))
    return float((correct * n - pred @ true) / denominator) if denominator else 0.0


METRICS = {"accuracy": accuracy, "f1": f1, "f1_macro": f1_macro, "mcc": matthews_corrcoef}


def compute_metrics(task: Task, preds: np.ndarray, labels: np.ndarray, split: str = "validation") -> dict[str, float]:
    """The task's metrics on one dev split, keyed by name; MNLI's mismatched split adds `_mm`."""
    return {name + metric_suffix(split): METRICS[name](preds, labels) for name in task.metrics}
