"""The method of the paper: the CMI math, the objectives with the centroid policies of eq. (14), the KD loss,
and the training loop the scripts share."""
from cmi.core import CMIStats, class_centroids, conditional_mutual_information, feature_distribution, kl_divergence
from cmi.objectives import CENTROIDS, CMIObjective, Centroids, DistillationObjective, Features, kd_loss

__all__ = [
    "CMIStats", "class_centroids", "conditional_mutual_information", "feature_distribution", "kl_divergence",
    "CENTROIDS", "CMIObjective", "Centroids", "DistillationObjective", "Features", "kd_loss",
]
