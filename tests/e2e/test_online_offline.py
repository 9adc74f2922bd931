"""Online == offline with the shared pipeline, through the live platform: FD001 test units (one shorter
than the window, so padded) replayed into ingestion; every prediction each EquipmentActor recorded equals
the offline evaluation of the served model (its ONNX fed `unit_features` with its card's spec) within
1e-6, so the numbers bench/bench_models.py prints are what operators get. Then a hot swap through
`model-updates` to a version with other operating conditions: the actors compute the next readings'
features with the new version's spec.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.profiles import TURBOFAN
from apps.training.quality import fit_conditions
from tests.e2e.fleet_replay import champion, offline, predicted, replay, serve, served_card
from tests.e2e.platform import Platform, running_platform, write_components

pytestmark = pytest.mark.e2e

UNITS = (1, 14, 22, 85)  # FD001 test units of 31, 46, 39 and 34 cycles: all start padded (window 60)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("online-offline")
    components = write_components(tmp / "components", "embedded")
    env = {"VIGIL_TRAINING_N_ESTIMATORS": "60", "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "0"}
    with running_platform(components, tmp, env) as p:
        yield p


@pytest.fixture
def actor_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(platform.apps["equipment"].sidecar.http_port))


def test_every_online_prediction_equals_the_offline_evaluation(platform: Platform, actor_env: None) -> None:
    model = champion(platform)
    assert model.card.features is not None and model.card.features.conditions is not None
    assert served_card(platform) == model.card  # the spec the actors fetch is the champion's
    test = cmapss.load_test()
    units = {u: test[u] for u in UNITS}
    prefix = f"oo-{uuid.uuid4().hex[:6]}-"
    replay(platform, units, prefix)
    got = predicted(platform, units, prefix)
    for u, traj in units.items():
        points = got[u]
        assert [p["seq"] for p in points] == [int(c) for c in traj[:, 1]], "one prediction per reading"
        assert {p["model_version"] for p in points} == {model.card.version}
        want = offline(model.onnx, model.card.features, traj)
        np.testing.assert_allclose([p["predicted_rul"] for p in points], want, rtol=0, atol=1e-6)


def test_a_hot_swap_changes_the_features_the_actors_compute(platform: Platform, actor_env: None) -> None:
    model = champion(platform)
    assert model.card.features is not None
    # The same trees, other operating conditions (fitted on FD002's six): only the features differ.
    six = fit_conditions({u: t for u, t in cmapss.load_train("FD002").items() if u <= 20}, TURBOFAN)
    swapped = model.card.model_copy(
        update={
            "version": model.card.version + 100,
            "features": model.card.features.model_copy(update={"conditions": six}),
        }
    )
    test = cmapss.load_test()
    units = {u: test[u] for u in (14, 22)}
    prefix = f"hs-{uuid.uuid4().hex[:6]}-"
    replay(platform, {u: t[:20] for u, t in units.items()}, prefix)
    before = predicted(platform, {u: t[:20] for u, t in units.items()}, prefix)
    serve(platform, swapped, model.onnx)
    replay(platform, {u: t[20:] for u, t in units.items()}, prefix)
    after = predicted(platform, units, prefix)
    for u, traj in units.items():
        old = [p for p in after[u] if p["seq"] <= 20]
        new = [p for p in after[u] if p["seq"] > 20]
        assert old == before[u] and {p["model_version"] for p in new} == {swapped.version}
        assert swapped.features is not None
        want = offline(model.onnx, swapped.features, traj)[20:]
        np.testing.assert_allclose([p["predicted_rul"] for p in new], want, rtol=0, atol=1e-6)
        # and not what the old spec would have given
        assert not np.allclose(want, offline(model.onnx, model.card.features, traj)[20:], atol=1e-3)
