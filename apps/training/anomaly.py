"""The `anomaly` model kind: no labels, so a fleet without failure history is covered from day one.

An isolation forest learns what each machine's healthy early life looks like (the first readings of
every machine, assumed healthy); its score is higher the less a window looks like that. The alert
threshold is the score that healthy windows of held-out machines exceed at the chosen false-alarm
rate, so the rate is measured on machines the model never saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from sklearn.ensemble import IsolationForest

from apps.training.trainer import ONNX_INPUT_NAME

HEALTHY_FRACTION: Final = 0.25  # the first quarter of a machine's readings counts as healthy
FALSE_ALARM_RATE: Final = 0.01
SCORE_OUTPUT: Final = "score"


@dataclass(frozen=True, slots=True)
class AnomalyModel:
    forest: IsolationForest
    threshold: float  # scores above it alert
    false_alarm_rate: float  # measured on the held-out machines' healthy windows

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per row: the negated decision function (0 is the forest's own boundary)."""
        return -np.asarray(self.forest.decision_function(X), dtype=np.float64)


def healthy_rows(features: Mapping[int, np.ndarray], fraction: float = HEALTHY_FRACTION) -> np.ndarray:
    """The early-life rows of every machine (machine -> features at every reading)."""
    return np.vstack([f[: max(1, int(f.shape[0] * fraction))] for f in features.values()])


def train_anomaly_model(
    features: Mapping[int, np.ndarray],
    held_out: set[int],
    false_alarm_rate: float = FALSE_ALARM_RATE,
    params: Mapping[str, Any] | None = None,
) -> AnomalyModel:
    """Fit on the healthy rows of machines not in `held_out`; threshold on the healthy rows of those."""
    fit = healthy_rows({m: f for m, f in features.items() if m not in held_out})
    check = healthy_rows({m: f for m, f in features.items() if m in held_out})
    forest = IsolationForest(**{"n_estimators": 100, "random_state": 7, **(params or {})}).fit(fit)
    draft = AnomalyModel(forest, 0.0, 0.0)
    scores = draft.predict(check)
    # "higher": an actual healthy score, so at most `false_alarm_rate` of the healthy rows exceed it
    threshold = float(np.quantile(scores, 1.0 - false_alarm_rate, method="higher"))
    return AnomalyModel(forest, threshold, float(np.mean(scores > threshold)))


def export_anomaly_onnx(model: AnomalyModel, n_features: int) -> bytes:
    """ONNX whose only output is the anomaly score, shape [batch, 1]."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model.forest,
        initial_types=[(ONNX_INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    graph = onx.graph
    decision = graph.output[1].name  # [label, scores]: the decision function
    graph.node.append(helper.make_node("Neg", [decision], [SCORE_OUTPUT]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, [None, 1]))
    onnx.checker.check_model(onx)
    return onx.SerializeToString()
