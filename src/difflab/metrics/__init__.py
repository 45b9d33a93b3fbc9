"""Evaluation metrics: Fréchet distance, FID/KID/IS/precision-recall on shipped or Inception features, exact W2.

Lower layer: no Lightning or Hydra here.
"""

from difflab.metrics.extractors import (
    INCEPTION_FILE,
    INCEPTION_URL,
    FeatureExtractor,
    InceptionFeatures,
    LeNetExtractor,
    build_feature_extractor,
    inception_weights_path,
)
from difflab.metrics.frechet import frechet_distance, gaussian_statistics
from difflab.metrics.lenet import LeNetFeatures, load_lenet
from difflab.metrics.naming import metric_name, sampler_label
from difflab.metrics.precision_recall import precision_recall
from difflab.metrics.reference import ReferenceStatistics, reference_key, reference_statistics
from difflab.metrics.suite import SAMPLE_METRICS, MetricSuite
from difflab.metrics.two_d import wasserstein2

__all__ = [
    "frechet_distance", "gaussian_statistics", "wasserstein2", "precision_recall",
    "FeatureExtractor", "LeNetExtractor", "InceptionFeatures", "LeNetFeatures", "build_feature_extractor", "load_lenet",
    "inception_weights_path", "INCEPTION_URL", "INCEPTION_FILE",
    "ReferenceStatistics", "reference_key", "reference_statistics",
    "MetricSuite", "SAMPLE_METRICS", "metric_name", "sampler_label",
]
