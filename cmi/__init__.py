"""The method of the paper: the CMI math, the objectives with the alternating centroid step, the KD loss, and
the training loop the scripts share."""
from cmi.core import CMIStats, class_centroids, conditional_mutual_information, feature_distribution, kl_divergence
from cmi.objectives import CMIObjective, Centroids, DistillationObjective, FeatureMap, kd_loss

__all__ = [
    "CMIStats", "class_centroids", "conditional_mutual_information", "feature_distribution", "kl_divergence",
    "CMIObjective", "Centroids", "DistillationObjective", "FeatureMap", "kd_loss",
]
