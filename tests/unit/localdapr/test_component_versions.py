"""Which spec.version values load: daprd's components.IsInitialVersion ("", v0, v1, any case)."""

from __future__ import annotations

from pathlib import Path

import pytest

from localdapr.components.factory import component_class
from localdapr.components.spec import ComponentSpec
from localdapr.errors import ComponentError
from localdapr.state.memory import InMemoryStateStore


def spec(version: str) -> ComponentSpec:
    return ComponentSpec(
        name="s",
        type="state.in-memory",
        version=version,
        entries=[],
        scopes=[],
        secret_store=None,
        file=Path("s.yaml"),
    )


@pytest.mark.parametrize("version", ["", "v1", "V1", "v0"])
def test_initial_versions_load(version: str) -> None:
    assert component_class(spec(version)) is InMemoryStateStore


@pytest.mark.parametrize("version", ["v2", "1", "latest"])
def test_other_versions_are_refused(version: str) -> None:
    with pytest.raises(ComponentError, match=rf"spec.version '{version}' is not supported"):
        component_class(spec(version))
