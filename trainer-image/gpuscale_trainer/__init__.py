"""Elastic TensorFlow trainer that the gpuscale operator runs in every worker pod.

Importing the package selects tf-keras (Keras 2) for TensorFlow: Keras 3, the default
`tf.keras` in TensorFlow 2.21, fails inside `Model.fit` under MultiWorkerMirroredStrategy
("Attempt to convert a value (PerReplica ...) to a Tensor"). The variable only takes effect
when it is set before TensorFlow is imported, so it is set here, in the package root.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
# TensorFlow's C++ INFO and WARNING lines drown the per-epoch lines in `kubectl logs`.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
