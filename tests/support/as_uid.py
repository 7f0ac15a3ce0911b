"""Call the agent's sockets as another user, from a real child process.

The tests run as root (here and in CI). :func:`run_as` starts a child
process that drops its supplementary groups and switches to ``uid``:``gid``
with ``os.setgid``/``os.setuid`` before it calls ``fn``, so the agent sees a
genuinely different peer. The child talks gRPC with grpclib;
:func:`sds_fetch` and :func:`workload_x509` are the calls it makes. Sockets
such a child dials must live in a directory it can traverse: :func:`open_dir`
makes one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Cardinality
from spiffe._proto import workload_pb2

from tests.support.cli import REPO

__all__ = [
    "SDS_FETCH",
    "first_x509_response",
    "open_dir",
    "run_as",
    "sds_fetch",
    "workload_x509",
]

SDS_FETCH = "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets"
TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def open_dir() -> Path:
    """A fresh directory under /tmp that every user may traverse (for sockets)."""
    path = Path(tempfile.mkdtemp(prefix="mw-", dir="/tmp"))
    path.chmod(0o755)
    return path


_BOOT = """
import importlib, json, os, sys
fn = getattr(importlib.import_module(sys.argv[1]), sys.argv[2])
args = json.loads(sys.argv[5])
os.setgroups([])
os.setgid(int(sys.argv[4]))
os.setuid(int(sys.argv[3]))
print(json.dumps(fn(*args)))
"""


def run_as(uid: int, gid: int, fn: Callable[..., Any], *args: Any, timeout: float = 30) -> Any:
    """Run ``fn(*args)`` in a fresh child process as ``uid``:``gid``; return its JSON result.

    The child starts as root (the interpreter lives where only root may read),
    imports ``fn``'s module, then drops to ``uid``:``gid`` with no
    supplementary groups (``os.setuid``) before it calls ``fn``. A fresh
    process, not a fork: no gRPC core state of this process crosses over.
    """
    if os.geteuid() != 0:
        raise RuntimeError("switching to another uid needs root (the test suite runs as root)")
    env = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    result = subprocess.run(
        [sys.executable, "-c", _BOOT, fn.__module__, fn.__name__, str(uid), str(gid),
         json.dumps(args)],
        env=env, cwd="/", capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"child as uid {uid} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)


def _path(address: str) -> str:
    return address.removeprefix("unix:")


def sds_fetch(address: str, names: list[str]) -> dict[str, Any]:
    """One SDS FetchSecrets over a Unix socket: ``{"secrets": {name: {...}}}`` or ``{"error"}``."""

    async def fetch() -> dict[str, Any]:
        async with Channel(path=_path(address)) as channel:
            method = channel.request(
                SDS_FETCH,
                Cardinality.UNARY_UNARY,
                discovery_pb2.DiscoveryRequest,
                discovery_pb2.DiscoveryResponse,
                timeout=20,
            )
            try:
                async with method as stream:
                    await stream.send_message(
                        discovery_pb2.DiscoveryRequest(resource_names=names, type_url=TYPE_URL),
                        end=True,
                    )
                    response = await stream.recv_message()
                    await stream.recv_trailing_metadata()
            except GRPCError as exc:
                return {"error": exc.status.name}
        out: dict[str, dict[str, str]] = {}
        assert response is not None
        for item in response.resources:
            secret = secret_pb2.Secret()
            item.Unpack(secret)
            if secret.HasField("tls_certificate"):
                pem = secret.tls_certificate.certificate_chain.inline_bytes
                out[secret.name] = {"chain": pem.decode("ascii")}
            else:
                pem = secret.validation_context.trusted_ca.inline_bytes
                out[secret.name] = {"trusted_ca": pem.decode("ascii")}
        return {"secrets": out}

    return asyncio.run(fetch())


async def first_x509_response(channel: Channel) -> dict[str, Any]:
    """The first FetchX509SVID response: ``{"spiffe_ids": [...]}`` or ``{"error": status}``."""
    method = channel.request(
        "/SpiffeWorkloadAPI/FetchX509SVID",
        Cardinality.UNARY_STREAM,
        workload_pb2.X509SVIDRequest,
        workload_pb2.X509SVIDResponse,
        timeout=20,
        metadata={"workload.spiffe.io": "true"},
    )
    try:
        async with method as stream:
            await stream.send_message(workload_pb2.X509SVIDRequest(), end=True)
            response = await stream.recv_message()
            await stream.cancel()
    except GRPCError as exc:
        return {"error": exc.status.name}
    if response is None:
        return {"error": "NO_RESPONSE"}
    return {"spiffe_ids": [s.spiffe_id for s in response.svids]}


def workload_x509(address: str) -> dict[str, Any]:
    """:func:`first_x509_response` over a fresh connection to ``address``."""

    async def fetch() -> dict[str, Any]:
        async with Channel(path=_path(address)) as channel:
            return await first_x509_response(channel)

    return asyncio.run(fetch())
