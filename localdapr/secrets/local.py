"""secretstores.local.file and secretstores.local.env, with daprd's flattening rules.

local.file (multiValued false, the default): the JSON file is flattened with `nestedSeparator`
(default ":"), so {"db": {"password": "x"}} gives the key "db:password", and GetSecret("db:password")
answers {"db:password": "x"}. With multiValued true one level stays a map: GetSecret("db") answers
{"password": "x"}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from localdapr.components.spec import ComponentSpec


class SecretNotFound(Exception):
    pass


class SecretStore:
    async def init(self) -> None:
        """Nothing to connect to; present for the component lifecycle."""

    async def close(self) -> None:
        """Nothing to release."""

    def get(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def bulk(self) -> dict[str, dict[str, str]]:
        raise NotImplementedError


def _flatten(value: Any, prefix: str, sep: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}{sep}{k}" if prefix else str(k), sep, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}{sep}{i}" if prefix else str(i), sep, out)
    else:
        out[prefix] = value if isinstance(value, str) else json.dumps(value)


class LocalFileSecretStore(SecretStore):
    def __init__(self, path: Path, separator: str, multi_valued: bool, spec: ComponentSpec) -> None:
        self.path = path
        self.separator = separator
        self.multi_valued = multi_valued
        self.spec = spec
        self._secrets: dict[str, dict[str, str]] = {}

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> LocalFileSecretStore:
        raw = Path(spec.require("secretsFile"))
        # Relative paths are relative to the working directory in daprd; localdapr also tries the
        # component file's folder so a resources folder can ship its own secrets file.
        path = raw if raw.is_absolute() or raw.exists() else spec.file.parent / raw
        return cls(path, spec.get("nestedSeparator", ":"), spec.get_bool("multiValued"), spec)

    async def init(self) -> None:
        if not self.path.is_file():
            raise self.spec.fail(f"metadata field 'secretsFile': file {self.path} does not exist")
        try:
            doc = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise self.spec.fail(
                f"metadata field 'secretsFile': {self.path} is not valid JSON: {exc}"
            ) from exc
        if not isinstance(doc, dict):
            raise self.spec.fail(f"metadata field 'secretsFile': {self.path} must hold a JSON object")
        if self.multi_valued:
            for key, value in doc.items():
                inner: dict[str, str] = {}
                if isinstance(value, dict):
                    for k, v in value.items():
                        _flatten(v, str(k), self.separator, inner)
                else:
                    _flatten(value, str(key), self.separator, inner)
                self._secrets[str(key)] = inner
        else:
            flat: dict[str, str] = {}
            _flatten(doc, "", self.separator, flat)
            self._secrets = {k: {k: v} for k, v in flat.items()}

    def get(self, key: str) -> dict[str, str]:
        if key not in self._secrets:
            raise SecretNotFound(f"secret {key} not found")
        return dict(self._secrets[key])

    def bulk(self) -> dict[str, dict[str, str]]:
        return {k: dict(v) for k, v in self._secrets.items()}


class LocalEnvSecretStore(SecretStore):
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> LocalEnvSecretStore:
        return cls(spec.get("prefix", ""))

    def _visible(self) -> dict[str, str]:
        return {
            name[len(self.prefix) :]: value
            for name, value in os.environ.items()
            if name.startswith(self.prefix)
        }

    def get(self, key: str) -> dict[str, str]:
        visible = self._visible()
        if key not in visible:
            raise SecretNotFound(f"secret {key} not found")
        return {key: visible[key]}

    def bulk(self) -> dict[str, dict[str, str]]:
        return {k: {k: v} for k, v in self._visible().items()}
