"""A lean load generator for mTLS renewals, run as its own process by ``bench/ca_issue.py``.

``python -m bench._renew_client URL BUNDLE CERT KEY CSRS CONNECTIONS SECONDS`` keeps
CONNECTIONS keep-alive TLS connections open (each authenticated with the client
SVID, as an agent renewing), each sending ``POST /v1/svid/x509`` with the next
CSR of the file CSRS (JSON list of PEM strings) as soon as the previous answer
has arrived; it prints ``{"ok": n, "errors": n, "seconds": t, "cpu": s}``.

No HTTP library: each request is pre-encoded bytes and an answer is read by
its ``Content-Length``, so the client costs little of the CPU the server
needs on a small machine (h2load, the other load generator, cannot present a
client certificate).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit


def _requests(host: str, csrs: list[str]) -> list[bytes]:
    out = []
    for csr in csrs:
        body = json.dumps({"csr": csr}).encode()
        head = (
            f"POST /v1/svid/x509 HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response; its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def run(
    url: str, ctx: ssl.SSLContext, csrs: list[str], connections: int, seconds: float
) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    requests = _requests(f"{host}:{port}", csrs)
    ok = errors = 0
    start = time.perf_counter()
    stop = start + seconds

    async def connection(i: int) -> None:
        nonlocal ok, errors
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        n = i
        try:
            while time.perf_counter() < stop:
                writer.write(requests[n % len(requests)])
                n += connections
                if await _answer(reader) == 200:
                    ok += 1
                else:
                    errors += 1
        finally:
            writer.close()

    cpu = time.process_time()
    await asyncio.gather(*(connection(i) for i in range(connections)))
    return {
        "ok": ok,
        "errors": errors,
        "seconds": time.perf_counter() - start,
        "cpu": time.process_time() - cpu,
    }


def main(argv: list[str]) -> None:
    url, bundle, cert, key, csr_file, connections, seconds = argv
    ctx = ssl.create_default_context(cafile=bundle)
    ctx.load_cert_chain(cert, key)
    csrs = json.loads(Path(csr_file).read_text())
    import uvloop  # noqa: PLC0415

    result = uvloop.run(run(url, ctx, csrs, int(connections), float(seconds)))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
