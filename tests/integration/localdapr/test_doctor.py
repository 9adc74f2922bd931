"""`vigil doctor` against the real servers, and against addresses where nothing listens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localdapr.launch.cli import main as localdapr_main
from tests.integration.localdapr.components import write
from vigil.cli import main as vigil

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.usefixtures("postgres_dsn", "rabbitmq_url", "mqtt_url", "redis_url")
@pytest.mark.parametrize("profile", ["postgres-rabbitmq", "mqtt", "redis"])
def test_every_server_of_a_profile_answers(profile: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert vigil(["doctor", "-f", str(REPO / "dapr.yaml"), "--profile", profile]) == 0
    out = capsys.readouterr().out
    assert f"profile {profile}" in out and "ready: every server answers" in out
    assert "DOWN" not in out


def test_embedded_profile_needs_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert vigil(["doctor", "-f", str(REPO / "dapr.yaml"), "--profile", "embedded"]) == 0
    assert "needs no server" in capsys.readouterr().out


def test_servers_that_do_not_answer_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ports where nothing listens: exit code 1, each server named with its error."""
    res = tmp_path / "res"
    (res / "secrets.json").parent.mkdir(parents=True)
    (res / "secrets.json").write_text(
        json.dumps({"pg": "host=127.0.0.1 port=1 user=postgres", "amqp": "amqp://guest:guest@127.0.0.1:2/"})
    )
    write(
        res,
        "components.yaml",
        f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: secretstore}}
spec:
  type: secretstores.local.file
  version: v1
  metadata: [{{name: secretsFile, value: "{res / "secrets.json"}"}}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: statestore}}
spec:
  type: state.postgresql
  version: v2
  metadata: [{{name: connectionString, secretKeyRef: {{name: pg, key: pg}}}}]
auth: {{secretStore: secretstore}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pubsub}}
spec:
  type: pubsub.rabbitmq
  version: v1
  metadata: [{{name: connectionString, secretKeyRef: {{name: amqp}}}}]
auth: {{secretStore: secretstore}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: events}}
spec:
  type: pubsub.mqtt3
  version: v1
  metadata: [{{name: url, value: "tcp://127.0.0.1:3"}}]
""",
    )
    assert localdapr_main(["doctor", "--resources", str(res)]) == 1
    captured = capsys.readouterr()
    lines = {line.split()[0]: line for line in captured.out.splitlines() if "DOWN" in line}
    assert set(lines) == {"PostgreSQL", "RabbitMQ", "MQTT"}
    assert "127.0.0.1:1/" in lines["PostgreSQL"] and "statestore" in lines["PostgreSQL"]
    assert "127.0.0.1:2/" in lines["RabbitMQ"] and "127.0.0.1:3" in lines["MQTT"]
    assert "not ready: PostgreSQL at 127.0.0.1:1/" in captured.err
    assert "password" not in captured.out + captured.err


def test_unknown_profile_and_both_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    template = str(REPO / "dapr.yaml")
    assert vigil(["doctor", "-f", template, "--profile", "nope"]) == 2
    assert vigil(["up", "-f", template, "--profile", "nope"]) == 2
    assert "no profile 'nope'" in capsys.readouterr().err
    assert vigil(["up", "-f", template, "--profile", "mqtt", "--resources", "components"]) == 2
    assert "not both" in capsys.readouterr().err
