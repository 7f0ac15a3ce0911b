"""The PDP follows the trust bundle from CA replicas, failing over, and trusts only the CA."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from authz.authn.trust import TrustBundleFile
from authz.authn.trust_url import TrustBundleUrl
from meshward.clock import FixedClock
from meshward.endpoints import Endpoints
from meshward.spiffe import TrustDomain
from tests.support.net import free_port
from tests.support.replicas import running_replicas, wait_for_same_bundle, workload_svid

TD = TrustDomain("example.org")


@contextmanager
def _impostor(svid_dir: Path) -> Iterator[str]:
    """An HTTPS server with a valid SVID of the trust domain, but not the CA's, serving a bundle."""
    body = json.dumps({"keys": []}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(svid_dir / "svid.pem", svid_dir / "key.pem")
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_pdp_follows_the_bundle_across_replicas(tmp_path: Path, postgres_url: str) -> None:
    with running_replicas(tmp_path / "ca", postgres_url) as (a, b):
        clock = FixedClock()
        bootstrap = TrustBundleFile(a.admin_dir / "bundle.pem", clock, TD.name)
        first = bootstrap.load().get(TD)
        assert first is not None and len(first.x509_authorities) == 2  # root, r0: before r1
        svid = workload_svid(a, "spiffe://example.org/web", tmp_path / "web")
        with _impostor(svid) as fake:
            source = TrustBundleUrl(
                Endpoints((fake, a.url, b.url), backoff_base=0.01, backoff_max=0.05),
                bootstrap,
                TD,
                clock,
                poll_seconds=1,
            )
            assert source.refresh()
        followed = source.current().get(TD)
        assert (
            followed is not None and len(followed.x509_authorities) == 3
        )  # the impostor's empty bundle was refused
        assert source.endpoints.order()[0] == a.url

        # Replica a dies; b rotates: the next fetch fails over to b and sees b's next CA.
        assert a.process is not None
        a.process.kill()
        a.process.wait()
        a.process = None
        with b.admin() as admin:
            assert admin.post("/v1/ca/rotate/prepare").status_code == 200
        wait_for_same_bundle([b])
        clock.advance(1)
        source.current()  # starts one background fetch, answers at once from the last good bundle
        deadline = time.monotonic() + 20
        while len(source.current().get(TD).x509_authorities) != 4:  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                pytest.fail(f"bundle not followed: {source.last_error}")
            clock.advance(1)
            time.sleep(0.1)
        assert source.endpoints.order()[0] == b.url
        assert len(source.current().get(TD).jwt_keys) == 3  # type: ignore[union-attr]
