"""The non-deep baseline: logistic regression on hand-made ECG features plus age and sex."""

from __future__ import annotations

from typing import Final

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from common.data.arrays import EcgArrays
from common.models.features import feature_matrix

FEATURE_BASELINE: Final[str] = "features_logreg"


class FeatureBaseline:
    """ST level at J+60 ms and T amplitude per lead, heart rate, QRS width, age and sex -> logistic
    regression (class-balanced, L2, missing features imputed with the training median)."""

    def __init__(self, fs: int, seed: int = 0) -> None:
        self.fs = fs
        self.pipeline: Pipeline = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000, random_state=seed),
        )

    def features(self, data: EcgArrays) -> np.ndarray:
        return np.concatenate([feature_matrix(np.asarray(data.x), self.fs), data.demo], axis=1)

    def fit(self, train: EcgArrays) -> FeatureBaseline:
        self.pipeline.fit(self.features(train), train.y.astype(int))
        return self

    def predict(self, data: EcgArrays) -> np.ndarray:
        out: np.ndarray = self.pipeline.predict_proba(self.features(data))[:, 1]
        return out

    @property
    def n_parameters(self) -> int:
        lr: LogisticRegression = self.pipeline[-1]
        return int(lr.coef_.size + lr.intercept_.size)
