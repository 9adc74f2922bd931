"""One loaded ONNX model: an ONNX Runtime session with its model card, and the errors serving raises."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from apps.common.contracts import ModelCard


class ModelNotReady(Exception):
    """No model of that name is loaded (none trained yet, or the registry is unreachable): 503."""


class BadInput(Exception):
    """The request does not fit the model (feature names or count): 422."""


class ModelChanged(Exception):
    """The rows were computed for another version than the one served (a hot swap): 409, so the caller
    recomputes them with the served version's feature spec instead of being answered by a model its
    features do not fit."""


class OnnxModel:
    def __init__(self, card: ModelCard, onnx: bytes, intra_op_threads: int = 1) -> None:
        self.card = card
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx, sess_options=options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        expected = self.session.get_inputs()[0].shape[-1]
        if isinstance(expected, int) and expected != len(card.feature_names):
            raise ValueError(
                f"model {card.name} v{card.version}: ONNX input has {expected} features but the card names "
                f"{len(card.feature_names)}"
            )

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> int:
        return self.card.version

    def check(self, feature_names: list[str]) -> None:
        expected = self.card.feature_names
        if feature_names == expected:
            return
        if len(feature_names) != len(expected):
            raise BadInput(
                f"model {self.name} v{self.version} expects {len(expected)} features, "
                f"got {len(feature_names)}"
            )
        i = next(i for i, (a, b) in enumerate(zip(feature_names, expected, strict=True)) if a != b)
        raise BadInput(
            f"feature_names[{i}] is {feature_names[i]!r} but model {self.name} v{self.version} expects "
            f"{expected[i]!r} there"
        )

    def run(self, rows: np.ndarray) -> np.ndarray:
        """Predictions for a float32 matrix (blocking; the batcher runs it in a worker thread)."""
        out = self.session.run(None, {self.input_name: rows.astype(np.float32, copy=False)})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)
