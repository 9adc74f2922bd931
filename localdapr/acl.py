"""Service invocation access control: a Configuration's `spec.accessControl`, applied as daprd's pkg/acl.

The callee's sidecar decides, from the caller's identity (`spiffe://<trust domain>/ns/<namespace>/<app
id>`), the operation (the method path) and the HTTP verb: the caller's policy (matched on app id,
namespace and trust domain) with its operations, else the global `defaultAction`. Operations are path
patterns where `*` stands for one path segment and `**` for any number of them; for an HTTP app they
match case-insensitively. A verb listed for the operation (or `*`) decides; an operation that matches
without its verb falls back to the policy's default action. Actor calls are not service invocation and
are not governed by it, in daprd as here.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from localdapr.errors import ComponentError

ALLOW, DENY = "allow", "deny"
DEFAULT_TRUST_DOMAIN = "public"
DEFAULT_NAMESPACE = "default"


def spiffe_id(trust_domain: str, namespace: str, app_id: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/{app_id}"


def parse_spiffe_id(identity: str) -> tuple[str, str, str] | None:
    """(trust domain, namespace, app id) of `spiffe://td/ns/namespace/app-id`, else None."""
    parts = identity.split("/")
    if not identity.startswith("spiffe://") or len(parts) < 6 or parts[3] != "ns":
        return None
    return parts[2], parts[4], parts[5]


def normalize_operation(operation: str) -> str:
    """The method as daprd compares it: one leading slash, no duplicate slashes or dot segments."""
    path = posixpath.normpath("/" + operation.split("?", 1)[0])
    return "/" if path in (".", "//") else path.replace("//", "/")


@dataclass(slots=True)
class Operation:
    segments: list[str]
    verbs: dict[str, str]
    action: str

    def specificity(self) -> tuple[int, ...]:
        # A literal segment beats `*`, which beats `**`: the most specific matching pattern decides.
        return tuple(2 if s not in ("*", "**") else (1 if s == "*" else 0) for s in self.segments)

    def matches(self, parts: list[str]) -> bool:
        return _match(self.segments, parts)


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, parts[i:]) for i in range(len(parts) + 1))
    if not parts:
        return False
    return (head == "*" or head == parts[0]) and _match(rest, parts[1:])


@dataclass(slots=True)
class AppPolicy:
    app_id: str
    trust_domain: str
    namespace: str
    default_action: str
    operations: list[Operation] = field(default_factory=list)


@dataclass(slots=True)
class AccessControl:
    default_action: str
    trust_domain: str
    policies: dict[tuple[str, str], AppPolicy]

    @classmethod
    def from_configuration(cls, spec: dict[str, Any], source: str) -> AccessControl | None:
        """None when the Configuration has no accessControl (every caller allowed, as in daprd)."""
        raw = spec.get("accessControl")
        if not raw:
            return None
        if not isinstance(raw, dict):
            raise ComponentError(f"{source}: accessControl must be a mapping")
        raw_policies = raw.get("policies") or []
        default = str(raw.get("defaultAction") or "").lower()
        if not default:
            # daprd: policies without a global default action deny by default; an empty spec allows.
            default = DENY if raw_policies else ALLOW
        _check_action(default, f"{source}: accessControl.defaultAction")
        policies: dict[tuple[str, str], AppPolicy] = {}
        missing_td, missing_ns, missing_app = [], [], False
        for i, p in enumerate(raw_policies):
            app_id, td, ns = str(p.get("appId") or ""), str(p.get("trustDomain") or ""), p.get("namespace")
            missing_app = missing_app or not app_id
            if not td:
                missing_td.append(app_id)
            if not ns:
                missing_ns.append(app_id)
            if not app_id or not td or not ns:
                continue
            app_default = str(p.get("defaultAction") or "").lower()
            if app_default:
                _check_action(app_default, f"{source}: accessControl.policies[{i}].defaultAction")
            ops = []
            for j, op in enumerate(p.get("operations") or []):
                where = f"{source}: accessControl.policies[{i}].operations[{j}]"
                name, action = str(op.get("name") or ""), str(op.get("action") or "").lower()
                if not name:
                    raise ComponentError(f"{where}: name is required")
                _check_action(action, f"{where}.action")
                verbs = {str(v).upper(): action for v in op.get("httpVerb") or []}
                segments = [s for s in normalize_operation(name).lower().split("/") if s]
                ops.append(Operation(segments, verbs, action))
            policies[(app_id, str(ns))] = AppPolicy(app_id, td, str(ns), app_default, ops)
        if missing_td or missing_ns or missing_app:
            raise ComponentError(
                f"{source}: invalid access control spec. missing trustdomain for apps: {missing_td}, "
                f"missing namespace for apps: {missing_ns}, missing app name on at least one of the app "
                f"policies: {str(missing_app).lower()}"
            )
        trust_domain = str(raw.get("trustDomain") or DEFAULT_TRUST_DOMAIN)
        return cls(default, trust_domain, policies)

    def denial(self, caller: str | None, operation: str, verb: str, http_app: bool = True) -> str | None:
        """daprd's message when the call is denied, None when it is allowed."""
        operation = normalize_operation(operation)
        if self._allowed(caller, operation, verb.upper(), http_app):
            return None
        verb_name = verb.upper() or "NONE"
        return (
            f"access control policy has denied access to id: {caller} operation: {operation} "
            f"verb: {verb_name}"
        )

    def _allowed(self, caller: str | None, operation: str, verb: str, http_app: bool) -> bool:
        parsed = parse_spiffe_id(caller or "")
        if parsed is None:
            return self.default_action == ALLOW
        trust_domain, namespace, app_id = parsed
        policy = self.policies.get((app_id, namespace))
        if policy is None or policy.trust_domain != trust_domain:
            return self.default_action == ALLOW
        action = policy.default_action or self.default_action
        parts = [s for s in (operation.lower() if http_app else operation).split("/") if s]
        matching = [op for op in policy.operations if op.matches(parts)]
        if matching:
            op = max(matching, key=Operation.specificity)
            if not http_app:
                action = op.action
            elif verb:
                action = op.verbs.get(verb, op.verbs.get("*", action))
            else:
                action = policy.default_action
        return action == ALLOW


def _check_action(action: str, where: str) -> None:
    if action not in (ALLOW, DENY):
        raise ComponentError(f"{where} must be allow or deny, got {action!r}")
