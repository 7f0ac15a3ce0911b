"""Where the console's data comes from: the PDP's and the CA's HTTP APIs (the I/O edge).

Every call has a short timeout and turns a failure into :class:`Unavailable`
with a message fit for the page (never a credential or a response body the
console did not expect). The pages show what they could read and say what
they could not.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from console.errors import ConsoleError

__all__ = ["CaApi", "PdpApi", "Unavailable"]

TIMEOUT = httpx.Timeout(3.0)


class Unavailable(ConsoleError):
    """A part could not be read; the message says which and why, for the page."""

    code = "unavailable"


def _fail(what: str, exc: Exception) -> Unavailable:
    if isinstance(exc, httpx.HTTPStatusError):
        return Unavailable(f"{what}: HTTP {exc.response.status_code}")
    return Unavailable(f"{what}: {type(exc).__name__}")


@dataclass
class PdpApi:
    """The PDP's HTTP port: status, metrics, the decision API and the admin API."""

    base_url: str
    admin_token: bytes | None = None
    client: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT)
        return self.client

    def _admin(self) -> dict[str, str]:
        if self.admin_token is None:
            return {}
        return {"authorization": "Bearer " + self.admin_token.decode()}

    async def _json(self, what: str, method: str, path: str, **kw: Any) -> Any:
        try:
            response = await self._client().request(method, path, **kw)
            if response.status_code >= 500 or response.status_code in (401, 403, 404):
                response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _fail(what, exc) from exc

    async def status(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._json("policy status", "GET", "/v1/policies")
        return body

    async def metrics_text(self) -> str:
        try:
            response = await self._client().get("/metrics")
            response.raise_for_status()
            return response.text
        except httpx.HTTPError as exc:
            raise _fail("metrics", exc) from exc

    async def active_bundle(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._json(
            "active policies", "GET", "/v1/policies/active", headers=self._admin()
        )
        return body

    async def authorize(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """One decision with its explanation; a 400 comes back as ``{"error", "detail"}``."""
        body: dict[str, Any] = await self._json(
            "decision API", "POST", "/v1/authorize", json={**document, "explain": True}
        )
        return body

    async def recent_decisions(self, filters: Mapping[str, str], limit: int) -> list[Any]:
        params = {k: v for k, v in filters.items() if v}
        params["limit"] = str(limit)
        body = await self._json(
            "recent decisions", "GET", "/v1/decisions", params=params, headers=self._admin()
        )
        items = body.get("decisions", []) if isinstance(body, dict) else []
        return list(items)

    async def decision(self, decision_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self._json(
            "decision",
            "GET",
            f"/v1/decisions/{decision_id}",
            params={"explain": "true"},
            headers=self._admin(),
        )
        return body

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


@dataclass
class CaApi:
    """The CA's HTTPS API: the public bundle, and with an admin SVID entries, agents, status."""

    base_url: str
    ca_file: Path | None
    admin_cert: Path | None = None
    admin_key: Path | None = None
    client: httpx.AsyncClient | None = None
    admin_client: httpx.AsyncClient | None = None

    def _context(self, admin: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if admin and self.admin_cert is not None and self.admin_key is not None:
            context.load_cert_chain(str(self.admin_cert), str(self.admin_key))
        return context

    def _client(self, admin: bool) -> httpx.AsyncClient:
        if admin:
            if self.admin_cert is None or not self.admin_cert.exists():
                raise Unavailable("CA admin API: no admin SVID (run `meshward ca admin login`)")
            if self.admin_client is None:
                self.admin_client = httpx.AsyncClient(
                    base_url=self.base_url, timeout=TIMEOUT, verify=self._context(True)
                )
            return self.admin_client
        if self.client is None:
            self.client = httpx.AsyncClient(
                base_url=self.base_url, timeout=TIMEOUT, verify=self._context(False)
            )
        return self.client

    async def _json(self, what: str, path: str, *, admin: bool) -> Any:
        try:
            client = self._client(admin)
            response = await client.get(path)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError, OSError, ssl.SSLError) as exc:
            raise _fail(what, exc) from exc

    async def bundle(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._json("trust bundle", "/v1/bundle", admin=False)
        return body

    async def entries(self) -> list[Any]:
        body = await self._json("registration entries", "/v1/entries", admin=True)
        return list(body.get("entries", [])) if isinstance(body, dict) else list(body)

    async def agents(self) -> list[Any]:
        body = await self._json("agents", "/v1/agents", admin=True)
        return list(body.get("agents", [])) if isinstance(body, dict) else list(body)

    async def status(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._json("CA status", "/v1/ca/status", admin=True)
        return body

    async def svids(self) -> list[Any]:
        body = await self._json("live SVIDs", "/v1/svids", admin=True)
        return list(body.get("svids", [])) if isinstance(body, dict) else []

    async def close(self) -> None:
        for client in (self.client, self.admin_client):
            if client is not None:
                await client.aclose()
