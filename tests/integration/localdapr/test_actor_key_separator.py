"""The sidecar's actor API refuses '||' in actor types, actor ids and reminder and timer names (the
separator of the keys it stores them under) with a 400 before touching any store, as daprd does."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from localdapr.sidecar import SidecarOptions
from localdapr.testing import SidecarThread
from tests.integration.localdapr.components import component, write

pytestmark = pytest.mark.sidecar


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("actors-sep")
    metadata = {"connectionString": str(tmp / "state.db"), "actorStateStore": "true"}
    write(tmp / "res", "statestore.yaml", component("statestore", "state.sqlite", metadata))
    sidecar = SidecarThread(
        SidecarOptions(app_id="caller", resources_paths=[tmp / "res"], registry_dir=tmp / "reg")
    ).start()
    try:
        yield f"http://127.0.0.1:{sidecar.options.http_port}/v1.0/actors"
    finally:
        sidecar.stop()


@pytest.mark.parametrize(
    ("method", "path", "what"),
    [
        ("PUT", "/T/a%7C%7Cb/method/M", "actor id 'a||b'"),
        ("PUT", "/T%7C%7CX/a/method/M", "actor type 'T||X'"),
        ("POST", "/T/a%7C%7Cb/state", "actor id 'a||b'"),
        ("GET", "/T/a%7C%7Cb/state/k", "actor id 'a||b'"),
        ("PUT", "/T/a/reminders/r%7C%7Cx", "reminder name 'r||x'"),
        ("GET", "/T/a/reminders/r%7C%7Cx", "reminder name 'r||x'"),
        ("PUT", "/T/a/timers/t%7C%7Cx", "timer name 't||x'"),
    ],
)
def test_a_separator_in_a_key_part_is_a_400(api: str, method: str, path: str, what: str) -> None:
    answer = httpx.request(method, api + path, json={"dueTime": "1s"}, timeout=10)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"errorCode": "ERR_MALFORMED_REQUEST", "message": f"{what} can't contain '||'"}
