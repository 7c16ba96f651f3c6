"""The reference control plane on a loopback port: long-poll, per-environment credentials,
exact totals with resends recognized, persistence across restarts, the OpenAPI document."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from meterplane.controlplane import openapi
from meterplane.sync.client import ControlPlaneClient, ControlPlaneError
from meterplane.sync.protocol import LifecycleBatch, LifecycleEvent, Rollup, RollupBatch
from tests.sync.harness import ADMIN, CATALOG, ENV, TOKEN, Admin, ThreadControlPlane, sub


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ThreadControlPlane]:
    plane = ThreadControlPlane(tmp_path).start()
    yield plane
    plane.stop()


@pytest.fixture
def admin(cp: ThreadControlPlane) -> Iterator[Admin]:
    a = Admin(cp.url)
    yield a
    a.close()


def rollup(rid: str, rev: int, value: float, customer: str = "acme") -> Rollup:
    return Rollup(
        rollupId=rid,
        customerId=customer,
        featureId="api-calls",
        periodStart="2026-11-01T00:00:00Z",
        periodEnd="2026-12-01T00:00:00Z",
        value=value,
        asOf="2026-11-20T00:00:00Z",
        revision=rev,
    )


def test_long_poll_answers_as_soon_as_a_change_is_pushed(
    cp: ThreadControlPlane, admin: Admin
) -> None:
    client = ControlPlaneClient(cp.url, ENV, TOKEN)
    try:
        empty = client.changes(None, 0)
        assert empty.changes == []
        assert empty.cursor == "0"
        pusher = threading.Timer(0.5, admin.push, args=("catalog.updated", CATALOG))
        t0 = time.monotonic()
        pusher.start()
        page = client.changes(None, 20)
        waited = time.monotonic() - t0
        pusher.join()
        assert 0.4 <= waited < 5
        assert [c.seq for c in page.changes] == [1]
        assert page.changes[0].type == "catalog.updated"
        admin.push("subscription.created", {"customerId": "acme", "subscription": sub("pro")})
        admin.push("subscription.cancelled", {"customerId": "acme"})
        page = client.changes(page.cursor, 1)
        assert [(c.seq, c.type) for c in page.changes] == [
            (2, "subscription.created"),
            (3, "subscription.cancelled"),
        ]
        assert page.cursor == "3"
        t0 = time.monotonic()
        assert client.changes("3", 0.5).changes == []
        assert time.monotonic() - t0 >= 0.4  # held for the wait, then answered empty
    finally:
        client.close()


def test_the_bearer_credential_is_per_environment(cp: ThreadControlPlane, admin: Admin) -> None:
    other = "env-token-globex-0123456789"
    r = admin.http.put("/admin/v1/environments/globex-prod", json={"token": other})
    assert r.status_code == 200
    base = f"{cp.url}/v1/environments"
    cases = [
        (f"{base}/globex-prod/changes", {"Authorization": f"Bearer {TOKEN}"}),  # acme's token
        (f"{base}/{ENV}/changes", {"Authorization": f"Bearer {other}"}),
        (f"{base}/{ENV}/changes", {}),
        (f"{base}/nowhere/changes", {"Authorization": f"Bearer {TOKEN}"}),
        (f"{base}/{ENV}/changes", {"Authorization": f"Bearer {ADMIN}"}),
    ]
    for url, headers in cases:
        resp = httpx.get(url, headers=headers)
        assert resp.status_code == 401, url
        assert resp.json()["error"]["code"] == "unauthorized"
    assert (
        httpx.get(
            f"{base}/globex-prod/changes", headers={"Authorization": f"Bearer {other}"}
        ).status_code
        == 200
    )
    assert [x["status"] for x in admin.exchanges()] == [401] * 5 + [200]
    # The admin API takes only the admin credential.
    assert (
        httpx.get(
            f"{cp.url}/admin/v1/exchanges", headers={"Authorization": f"Bearer {TOKEN}"}
        ).status_code
        == 401
    )


def test_totals_stay_exact_and_resends_are_recognized(cp: ThreadControlPlane, admin: Admin) -> None:
    client = ControlPlaneClient(cp.url, ENV, TOKEN)
    try:
        assert (
            client.post_rollups(
                RollupBatch([rollup("a1", 1, 3), rollup("b1", 1, 9, "globex")])
            ).accepted
            == 2
        )
        assert client.post_rollups(RollupBatch([rollup("a2", 2, 5)])).accepted == 1
        resend = client.post_rollups(RollupBatch([rollup("a1", 1, 3), rollup("a2", 2, 5)]))
        assert (resend.accepted, resend.duplicates) == (0, 2)
        late = client.post_rollups(RollupBatch([rollup("a1-other", 1, 4)]))  # older revision
        assert (late.accepted, late.stale) == (0, 1)
        assert admin.totals() == {
            ("acme", "api-calls", "2026-11-01T00:00:00Z"): 5,
            ("globex", "api-calls", "2026-11-01T00:00:00Z"): 9,
        }
        event = LifecycleEvent(
            eventId="e1",
            type="usage.limit_crossed",
            customerId="acme",
            featureId="api-calls",
            periodStart="2026-11-01T00:00:00Z",
            periodEnd=None,
            usage=5,
            limit=5,
            crossing=1,
            detectedAt="2026-11-20T00:00:00Z",
        )
        assert client.post_lifecycle(LifecycleBatch([event])).accepted == 1
        assert client.post_lifecycle(LifecycleBatch([event])).duplicates == 1
        assert len(admin.state()["lifecycleEvents"]) == 1
        with pytest.raises(ControlPlaneError, match="HTTP 422") as err:
            client._post("/rollups", b'{"rollups": [{"rollupId": "x"}]}')
        assert not err.value.retryable
        with pytest.raises(ControlPlaneError, match="HTTP 422"):
            client._post("/rollups", b'{"rollups": []}')
    finally:
        client.close()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    cp = ThreadControlPlane(tmp_path).start()
    admin = Admin(cp.url)
    client = ControlPlaneClient(cp.url, ENV, TOKEN)
    admin.push("catalog.updated", CATALOG)
    client.post_rollups(RollupBatch([rollup("a1", 1, 3)]))
    client.close()
    admin.close()
    cp.stop()

    cp = ThreadControlPlane(tmp_path, port=cp.port).start()
    admin = Admin(cp.url)
    client = ControlPlaneClient(cp.url, ENV, TOKEN)
    try:
        assert client.post_rollups(RollupBatch([rollup("a1", 1, 3)])).duplicates == 1
        assert admin.push("governance.updated", {"rollupIntervalSeconds": 5})["seq"] == 2
        assert [c.type for c in client.changes(None, 0).changes] == [
            "catalog.updated",
            "governance.updated",
        ]
        assert admin.totals() == {("acme", "api-calls", "2026-11-01T00:00:00Z"): 3}
    finally:
        client.close()
        admin.close()
        cp.stop()


def test_the_admin_api_only_emits_well_formed_changes(admin: Admin) -> None:
    path = f"/admin/v1/environments/{ENV}/changes"
    bad = [
        {"type": "plan.deleted", "data": {}},
        {
            "type": "credit.granted",
            "data": {
                "grantId": "g",
                "customerId": "a",
                "featureId": "f",
                "amount": -1,
                "validFrom": "2026-01-01T00:00:00Z",
            },
        },
        {"type": "subscription.created", "data": {"customerId": "a"}},
    ]
    for body in bad:
        assert admin.http.post(path, json=body).status_code == 422, body
    assert admin.state()["changes"] == []


def test_the_committed_openapi_document_is_the_protocol_the_code_speaks() -> None:
    assert openapi.DOC.read_text(encoding="utf-8") == openapi.render(), (
        "docs/control-plane-openapi.yaml is stale: run python -m meterplane.controlplane.openapi"
    )
    doc = yaml.safe_load(openapi.DOC.read_text(encoding="utf-8"))
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["environmentToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The environment's credential, issued by the vendor.",
    }
    ops = {(p, m) for p, item in doc["paths"].items() for m in item}
    assert ops == {
        ("/v1/environments/{environment}/changes", "get"),
        ("/v1/environments/{environment}/rollups", "post"),
        ("/v1/environments/{environment}/lifecycle-events", "post"),
    }
    for path, method in ops:
        assert doc["paths"][path][method]["security"] == [{"environmentToken": []}]
    schemas = doc["components"]["schemas"]
    for name in (
        "CatalogData",
        "SubscriptionUpsert",
        "SubscriptionCancel",
        "CreditGrantData",
        "CreditRevoke",
        "GovernanceData",
    ):
        assert name in schemas
    assert set(schemas["Rollup"]["required"]) >= {
        "rollupId",
        "customerId",
        "featureId",
        "periodStart",
        "periodEnd",
        "value",
        "asOf",
    }
