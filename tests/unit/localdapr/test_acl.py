"""Access control specs as daprd parses and applies them (localdapr/acl.py)."""

from __future__ import annotations

import pytest

from localdapr.acl import AccessControl, normalize_operation
from localdapr.errors import ComponentError

CALLER = "spiffe://public/ns/default/gateway"


def acl(spec: dict) -> AccessControl:
    parsed = AccessControl.from_configuration({"accessControl": spec}, "config.yaml")
    assert parsed is not None
    return parsed


def test_no_access_control_allows_everyone() -> None:
    assert AccessControl.from_configuration({}, "config.yaml") is None


def test_policies_without_a_global_default_deny() -> None:
    parsed = acl({"policies": [{"appId": "gateway", "trustDomain": "public", "namespace": "default"}]})
    assert parsed.default_action == "deny"
    assert acl({"trustDomain": "public"}).default_action == "allow"


def test_a_policy_needs_trust_domain_namespace_and_app_id() -> None:
    with pytest.raises(
        ComponentError, match=r"missing trustdomain for apps: \[\], missing namespace for apps: \['x'\]"
    ):
        acl({"policies": [{"appId": "x", "trustDomain": "public"}]})
    with pytest.raises(ComponentError, match="must be allow or deny"):
        acl({"defaultAction": "maybe"})


def test_identity_must_match_trust_domain_and_namespace() -> None:
    spec = {
        "defaultAction": "deny",
        "policies": [
            {
                "appId": "gateway",
                "trustDomain": "public",
                "namespace": "default",
                "operations": [{"name": "/v1/**", "httpVerb": ["GET"], "action": "allow"}],
            }
        ],
    }
    parsed = acl(spec)
    assert parsed.denial(CALLER, "v1/fleet", "GET") is None
    assert parsed.denial("spiffe://other/ns/default/gateway", "v1/fleet", "GET") is not None
    assert parsed.denial("spiffe://public/ns/prod/gateway", "v1/fleet", "GET") is not None
    assert parsed.denial(None, "v1/fleet", "GET") is not None  # no identity: the global default


def test_operations_are_normalised_before_matching() -> None:
    assert normalize_operation("v1//alerts/./a-1/../a-2") == "/v1/alerts/a-2"
    spec = {
        "policies": [
            {
                "appId": "gateway",
                "trustDomain": "public",
                "namespace": "default",
                "operations": [{"name": "/v1/alerts/*/ack", "httpVerb": ["POST"], "action": "allow"}],
            }
        ]
    }
    parsed = acl(spec)
    assert parsed.denial(CALLER, "v1/alerts/a-1/ack", "POST") is None
    assert parsed.denial(CALLER, "v1/alerts/a-1/../../admin/ack", "POST") is not None
