"""HTTP client of the control-plane protocol (httpx), and the retry backoff.

Every request is opened by the agent. Every body goes through
``check_aggregates_only`` right before it is handed to the transport: this is the one
place where bytes leave, so the guard cannot be bypassed by a new caller.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from meterplane import __version__
from meterplane.core.errors import ConfigError, MeterplaneError
from meterplane.sync.protocol import (
    API_PREFIX,
    BatchResult,
    ChangePage,
    LifecycleBatch,
    RollupBatch,
    check_aggregates_only,
)


class ControlPlaneError(MeterplaneError):
    """A request to the control plane failed; ``retryable`` says whether trying again later
    can help (network errors, 5xx, 429) or the request itself was refused (other 4xx)."""

    def __init__(self, message: str, retryable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class Backoff:
    """Exponential backoff with jitter: the n-th consecutive failure waits a random time in
    ``[d/2, d]`` where ``d = min(cap, base * 2**n)``. The random half keeps a fleet of agents
    from retrying in lockstep after an outage; the fixed half guarantees the delay grows."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = max(cap_s, base_s)
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next try."""
        d: float = min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 60))
        self.failures += 1
        return d / 2 + self._rng.uniform(0, d / 2)

    def reset(self) -> None:
        """A success: the next failure starts from ``base`` again."""
        self.failures = 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """The control plane URL without a trailing slash; HTTPS is required except to loopback
    (the reference control plane in local runs and tests)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"METERPLANE_CONTROL_PLANE_URL: not an http(s) URL: {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            "METERPLANE_CONTROL_PLANE_URL: must be https:// (plain http only to loopback)"
        )
    return url.rstrip("/")


class ControlPlaneClient:
    """The agent's side of the protocol for one environment."""

    def __init__(
        self,
        base_url: str,
        environment: str,
        token: str,
        *,
        connect_timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.environment = environment
        self._http = httpx.Client(
            base_url=f"{check_url(base_url)}{API_PREFIX}/{environment}",
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"meterplane-sync/{__version__}",
            },
            timeout=httpx.Timeout(connect_timeout_s, read=30.0),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close connections."""
        self._http.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as err:
            raise ControlPlaneError(
                f"{method} {path}: {type(err).__name__}: {err}", retryable=True
            ) from None
        if resp.status_code < 300:
            return resp
        retry_after: float | None = None
        header = resp.headers.get("retry-after", "")
        if header.isdigit():
            retry_after = float(header)
        retryable = resp.status_code >= 500 or resp.status_code in (408, 429)
        raise ControlPlaneError(
            f"{method} {path}: HTTP {resp.status_code}: {resp.text[:200]}",
            retryable=retryable,
            retry_after_s=retry_after,
        )

    def changes(self, after: str | None, wait_s: float) -> ChangePage:
        """Long-poll the changes after ``after`` (None: from the beginning)."""
        params: dict[str, str] = {"wait": f"{wait_s:g}"}
        if after is not None:
            params["after"] = after
        resp = self._request(
            "GET",
            "/changes",
            params=params,
            timeout=httpx.Timeout(5.0, read=wait_s + 15.0),
        )
        try:
            return msgspec.json.decode(resp.content, type=ChangePage)
        except msgspec.DecodeError as err:
            raise ControlPlaneError(f"GET /changes: bad answer: {err}", retryable=True) from None

    def _post(self, path: str, body: bytes) -> BatchResult:
        check_aggregates_only(body)
        resp = self._request(
            "POST", path, content=body, headers={"Content-Type": "application/json"}
        )
        try:
            return msgspec.json.decode(resp.content, type=BatchResult)
        except msgspec.DecodeError as err:
            raise ControlPlaneError(f"POST {path}: bad answer: {err}", retryable=True) from None

    def post_rollups(self, batch: RollupBatch) -> BatchResult:
        """Publish rollups (resends are recognized by id)."""
        return self._post("/rollups", msgspec.json.encode(batch))

    def post_lifecycle(self, batch: LifecycleBatch) -> BatchResult:
        """Publish lifecycle events (resends are recognized by id)."""
        return self._post("/lifecycle-events", msgspec.json.encode(batch))
