"""A k-nearest-neighbour probe on frozen features: cosine distance, k = 20, majority vote (no training)."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier


def knn_proba(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_classes: int, k: int = 20) -> np.ndarray:
    """Vote shares [N_test, n_classes] among the k nearest training features by cosine distance."""
    clf = KNeighborsClassifier(n_neighbors=min(k, len(x_train)), metric="cosine", algorithm="brute").fit(
        x_train, y_train
    )
    proba = np.zeros((len(x_test), n_classes))
    proba[:, clf.classes_] = clf.predict_proba(x_test)
    return proba
