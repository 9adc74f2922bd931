"""The local secret store's file made from its template on first use (localdapr/secretsfile.py)."""

from __future__ import annotations

import base64
import json
import multiprocessing
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from localdapr.secretsfile import SecretsTemplateError, ensure_secrets_file, template_for

REPO = Path(__file__).resolve().parents[3]


def write_template(folder: Path) -> Path:
    template = folder / "secrets.template.json"
    template.write_text(
        json.dumps(
            {
                "notification": {"webhook-url": "http://127.0.0.1:8099/x"},
                "api": {"token": {"$generate": "token"}},
                "model-signing": {"$generate": "ed25519"},
            }
        )
    )
    return folder / "secrets.json"


def test_made_from_the_template_with_fresh_values_and_mode_0600(tmp_path: Path) -> None:
    target = write_template(tmp_path)
    assert template_for(target) == tmp_path / "secrets.template.json"
    assert ensure_secrets_file(target) is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    got = json.loads(target.read_text())
    assert got["notification"] == {"webhook-url": "http://127.0.0.1:8099/x"}
    assert len(got["api"]["token"]) >= 40
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(got["model-signing"]["private-key"]))
    public = base64.b64decode(got["model-signing"]["public-key"])
    private.public_key().verify(private.sign(b"m"), b"m")
    assert private.public_key().public_bytes_raw() == public
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_never_replaces_an_existing_file(tmp_path: Path) -> None:
    target = write_template(tmp_path)
    target.write_text('{"mine": "kept"}')
    assert ensure_secrets_file(target) is False
    assert json.loads(target.read_text()) == {"mine": "kept"}


def test_two_runs_make_one_file_and_keep_it(tmp_path: Path) -> None:
    target = write_template(tmp_path)
    assert ensure_secrets_file(target) is True
    first = target.read_text()
    assert ensure_secrets_file(target) is False
    assert target.read_text() == first


def test_no_template_no_file(tmp_path: Path) -> None:
    assert ensure_secrets_file(tmp_path / "secrets.json") is False
    assert not (tmp_path / "secrets.json").exists()


def test_an_unknown_generator_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "secrets.template.json").write_text('{"x": {"$generate": "rsa"}}')
    with pytest.raises(SecretsTemplateError, match="unknown generator 'rsa'"):
        ensure_secrets_file(tmp_path / "secrets.json")


def _race(target: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    results.put(ensure_secrets_file(Path(target)))


def test_processes_racing_create_it_once_and_complete(tmp_path: Path) -> None:
    target = write_template(tmp_path)
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_race, args=(str(target), results)) for _ in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    assert sorted(results.get(timeout=10) for _ in procs) == [False] * 5 + [True]
    assert "model-signing" in json.loads(target.read_text())


def test_the_shipped_template_renders_what_the_components_reference() -> None:
    """Every secretKeyRef of the local component folders names an entry of the template."""
    import yaml

    template = json.loads((REPO / "components" / "secrets.template.json").read_text())
    flat: set[str] = set()
    for top, inner in template.items():
        if set(inner) == {"$generate"}:
            flat |= {f"{top}:private-key", f"{top}:public-key"}
        else:
            flat |= {f"{top}:{k}" for k in inner}
    for file in REPO.glob("components/**/*.yaml"):
        for doc in yaml.safe_load_all(file.read_text()):
            for entry in (doc or {}).get("spec", {}).get("metadata", []) or []:
                if "secretKeyRef" in entry:
                    assert entry["secretKeyRef"]["name"] in flat, f"{file}: {entry}"
