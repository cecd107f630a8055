"""The models behind local SageMaker endpoints: Random Cut Forest, scikit-learn, XGBoost.

:func:`load_model` turns an :class:`~.config.EndpointConfig` into a :class:`Model`:

* ``rcf``: krcf (Rust bindings of AWS's random-cut-forest-by-aws), trained at start on
  the demo-taxi series or CSV columns (``data.py``). Like SageMaker's built-in RCF, a
  request row is one point (``shingle_size`` consecutive values per column, already
  shingled by the caller, as AWS's examples do) and the answer is its anomaly score;
  scoring never changes the forest, so answers do not depend on request order.
  ``time_decay = 0`` samples the training set uniformly, like SageMaker's batch training.
* ``sklearn``: an estimator or pipeline from joblib/pickle. Classifiers answer the
  probability of the positive class (``classes_[1]``) when binary, every class's
  probability when multiclass; regressors answer ``predict``.
* ``xgboost``: a Booster from XGBoost's JSON/UBJSON model file, answering what its
  objective predicts (``binary:logistic``: probability), as SageMaker's built-in XGBoost.

A :class:`Prediction` per row carries the score and, for classifiers, the label, which
``sagemaker.py`` serialises per Accept. Loading fails with :class:`ModelLoadError` and a
reason (missing library, unreadable file) so one bad endpoint does not stop the others.
Pickle files run code when loaded: only configure model files you trust.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Protocol

from .config import EndpointConfig
from .data import demo_taxi_series, read_csv_columns

JSON = "application/json"
CSV = "text/csv"


class ModelLoadError(Exception):
    """An endpoint's model could not be built; the message says why and how to fix it."""


class ModelInputError(Exception):
    """The rows cannot be scored by this model (width, missing or non-finite values)."""


@dataclass(frozen=True)
class Prediction:
    score: float | list[float]
    label: int | float | str | None = None


class Model(Protocol):
    kind: str
    json_key: str  # "scores" (RCF) or "predictions" (linear-learner / XGBoost style)
    default_accept: str  # what the SageMaker built-in counterpart answers without an Accept
    n_features: int  # values per request row
    allows_missing: bool  # an empty CSV field becomes NaN instead of an error
    description: str

    def predict(self, rows: list[list[float]]) -> list[Prediction]: ...


def load_model(endpoint: EndpointConfig) -> Model:
    if endpoint.model == "rcf":
        return RandomCutForestModel.train(endpoint)
    if endpoint.model == "sklearn":
        return SklearnModel.load(endpoint)
    if endpoint.model == "xgboost":
        return XGBoostModel.load(endpoint)
    raise ModelLoadError(f"unknown model kind {endpoint.model!r}")


# ---------------------------------------------------------------------------
# Random Cut Forest
# ---------------------------------------------------------------------------


class RandomCutForestModel:
    kind = "rcf"
    json_key = "scores"
    default_accept = JSON
    allows_missing = False

    def __init__(self, forest, n_features: int, description: str) -> None:
        self._forest = forest
        self.n_features = n_features
        self.description = description

    @classmethod
    def train(cls, ep: EndpointConfig) -> "RandomCutForestModel":
        try:
            import krcf
        except ImportError:
            raise ModelLoadError("model 'rcf' needs krcf (AWS's Random Cut Forest): pip install 'krcf>=0.4'") from None
        t0 = time.perf_counter()
        if ep.train == "demo-taxi":
            series = [[float(v)] for _, v in demo_taxi_series(ep.demo_points)]
            source = f"demo-taxi ({ep.demo_points} points)"
        else:
            try:
                series = read_csv_columns(ep.train_csv, list(ep.columns))
            except OSError as exc:
                raise ModelLoadError(f"cannot read train_csv {ep.train_csv}: {exc.strerror or exc}") from None
            except ValueError as exc:
                raise ModelLoadError(str(exc)) from None
            source = f"{ep.train_csv} column{'s' if len(ep.columns) > 1 else ''} {', '.join(ep.columns)}"
        bad = next((i for i, row in enumerate(series) if not all(math.isfinite(v) for v in row)), None)
        if bad is not None:
            raise ModelLoadError(f"training data row {bad + 1} of {source} is not finite: {series[bad]}")
        width = len(series[0]) * ep.shingle_size
        if len(series) < ep.shingle_size:
            raise ModelLoadError(f"{source} has {len(series)} rows, fewer than shingle_size {ep.shingle_size}")
        options = {
            "dimensions": len(series[0]),  # krcf: values per time step; a point holds shingle_size steps
            "shingle_size": ep.shingle_size,
            "num_trees": ep.num_trees,
            "sample_size": ep.sample_size,
            "random_seed": ep.seed,
            "lambda": ep.time_decay,
            "output_after": 1,  # score from the first point on: training data decides readiness
            # krcf's thread pool would not survive the fork into worker processes
            "parallel_execution_enabled": False,
            "internal_shingling": False,  # rows arrive already shingled, as SageMaker's RCF expects
        }
        try:
            forest = krcf.RandomCutForest(options)
            if ep.shingle_size == 1:
                for row in series:
                    forest.update(row)
            else:
                for i in range(len(series) - ep.shingle_size + 1):
                    # point = the window's time steps in order, each step's columns together
                    forest.update([v for row in series[i:i + ep.shingle_size] for v in row])
        except (ValueError, TypeError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"krcf refused the forest options {options}: {first}") from None
        seconds = time.perf_counter() - t0
        return cls(forest, width, f"rcf trained on {source} in {seconds:.2f} s "
                                  f"(dimensions {width}, {ep.num_trees} trees, sample {ep.sample_size})")

    def predict(self, rows: list[list[float]]) -> list[Prediction]:
        for i, row in enumerate(rows):
            if not all(math.isfinite(v) for v in row):
                raise ModelInputError(f"row {i + 1}: values must be finite numbers, got {row}")
        score = self._forest.score
        return [Prediction(score(row)) for row in rows]


# ---------------------------------------------------------------------------
# scikit-learn and XGBoost
# ---------------------------------------------------------------------------


def _python_value(value):
    """numpy scalar -> plain int/float/str for JSON."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _check_file(path: str | None) -> str:
    if not path or not os.path.isfile(path):
        raise ModelLoadError(f"model file {path} does not exist")
    return path


class SklearnModel:
    kind = "sklearn"
    json_key = "predictions"
    default_accept = CSV
    allows_missing = True  # NaN reaches the estimator, which decides (some accept it)

    def __init__(self, estimator, n_features: int, description: str) -> None:
        self._estimator = estimator
        self.n_features = n_features
        self.description = description
        self._classes = list(getattr(estimator, "classes_", []))
        self._proba = hasattr(estimator, "predict_proba") and len(self._classes) >= 2

    @classmethod
    def load(cls, ep: EndpointConfig) -> "SklearnModel":
        try:
            import numpy  # noqa: F401 - every scikit-learn model needs it
            import sklearn  # noqa: F401 - unpickling needs it; say so clearly if it is missing
        except ImportError:
            raise ModelLoadError("model 'sklearn' needs scikit-learn: pip install scikit-learn") from None
        import warnings

        # A model fitted on a DataFrame warns on every numpy call: rows have no column names by nature here.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        path = _check_file(ep.path)
        try:
            try:
                import joblib

                estimator = joblib.load(path)
            except ImportError:
                import pickle

                with open(path, "rb") as f:
                    estimator = pickle.load(f)
        except Exception as exc:  # noqa: BLE001 - unpickling can raise anything; report it, do not crash
            raise ModelLoadError(f"cannot load scikit-learn model {path}: {type(exc).__name__}: {exc}") from None
        if not hasattr(estimator, "predict"):
            raise ModelLoadError(f"{path} holds a {type(estimator).__name__}, which has no predict()")
        n_features = getattr(estimator, "n_features_in_", None)
        if not isinstance(n_features, int):
            raise ModelLoadError(f"{path}: the estimator is not fitted (no n_features_in_)")
        name = type(estimator).__name__
        return cls(estimator, n_features, f"scikit-learn {name} from {path} ({n_features} features)")

    def predict(self, rows: list[list[float]]) -> list[Prediction]:
        import numpy as np

        x = np.asarray(rows, dtype=np.float64)
        try:
            if self._proba:
                proba = self._estimator.predict_proba(x)
                labels = [_python_value(self._classes[k]) for k in proba.argmax(axis=1)]
                if proba.shape[1] == 2:
                    return [Prediction(float(p), lab) for p, lab in zip(proba[:, 1], labels, strict=True)]
                return [Prediction([float(v) for v in row], lab) for row, lab in zip(proba, labels, strict=True)]
            out = self._estimator.predict(x)
        except ValueError as exc:  # e.g. NaN into an estimator that refuses it
            raise ModelInputError(str(exc)) from None
        return [Prediction(_score(v)) for v in out]


def _score(value) -> float | list[float]:
    value = _python_value(value)
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ModelInputError(f"the model predicted {value!r}, which is not a number") from None


class XGBoostModel:
    kind = "xgboost"
    json_key = "predictions"
    default_accept = CSV  # SageMaker's built-in XGBoost answers text/csv
    allows_missing = True  # XGBoost treats NaN as missing, as SageMaker's XGBoost does with empty CSV fields

    def __init__(self, booster, objective: str, n_features: int, description: str) -> None:
        self._booster = booster
        self._objective = objective
        self.n_features = n_features
        self.description = description

    @classmethod
    def load(cls, ep: EndpointConfig) -> "XGBoostModel":
        try:
            import xgboost
        except ImportError:
            raise ModelLoadError("model 'xgboost' needs XGBoost: pip install xgboost-cpu (or xgboost)") from None
        path = _check_file(ep.path)
        try:
            booster = xgboost.Booster(params={"nthread": 1}, model_file=path)
        except xgboost.core.XGBoostError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
            raise ModelLoadError(f"cannot load XGBoost model {path}: {first}") from None
        import json

        try:
            objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        except (KeyError, ValueError, TypeError):
            objective = "unknown"
        n_features = booster.num_features()
        return cls(booster, objective, n_features,
                   f"xgboost ({objective}) from {path} ({n_features} features)")

    def predict(self, rows: list[list[float]]) -> list[Prediction]:
        import numpy as np

        x = np.asarray(rows, dtype=np.float32)
        out = self._booster.inplace_predict(x)
        obj = self._objective
        if out.ndim == 2:  # multi:softprob: one probability per class
            return [Prediction([float(v) for v in row], int(row.argmax())) for row in out]
        if obj == "binary:logistic":
            return [Prediction(float(p), int(p >= 0.5)) for p in out]
        if obj == "binary:logitraw":
            return [Prediction(float(m), int(m >= 0.0)) for m in out]
        if obj == "multi:softmax":
            return [Prediction(float(k), int(k)) for k in out]
        return [Prediction(float(v)) for v in out]
