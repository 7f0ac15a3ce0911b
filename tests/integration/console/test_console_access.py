"""The console's guards over real HTTP: CSRF, headers, login beyond loopback, bad config."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import meshward
from tests.support.console import Mesh, running_mesh
from tests.support.net import free_port, wait_for_port

TOKEN = "console-login-token-123456"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("access")) as running:
        yield running


def _csrf(client: httpx.Client, url: str) -> str:
    page = client.get(url).text
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_security_headers_on_every_answer(mesh: Mesh) -> None:
    for path in ("/", "/playground", "/static/console.css", "/nope"):
        reply = httpx.get(mesh.console_url + path)
        csp = reply.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert reply.headers["x-frame-options"] == "DENY"
        assert reply.headers["x-content-type-options"] == "nosniff"


def test_a_post_needs_the_form_token_and_the_same_origin(mesh: Mesh) -> None:
    form = {
        "principal": 'Workload::"x"',
        "action": 'Action::"GET"',
        "resource": 'Service::"y"',
    }
    with httpx.Client(base_url=mesh.console_url) as client:
        token = _csrf(client, "/playground")
        assert client.post("/playground", data=form).status_code == 403
        assert client.post("/playground", data={**form, "csrf": "forged"}).status_code == 403
        foreign = client.post(
            "/playground", data={**form, "csrf": token}, headers={"origin": "http://evil.test"}
        )
        assert foreign.status_code == 403
        ok = client.post("/playground", data={**form, "csrf": token})
        assert ok.status_code == 200
        assert 'data-testid="live-decision">deny' in ok.text
    # Another browser's token does not fit this browser's cookie.
    with httpx.Client(base_url=mesh.console_url) as other:
        other.get("/playground")
        assert other.post("/playground", data={**form, "csrf": token}).status_code == 403


def test_beyond_loopback_without_a_token_it_refuses_to_start(tmp_path: Path) -> None:
    result = meshward(
        "--state-dir", str(tmp_path), "console", "--addr", f"0.0.0.0:{free_port()}", timeout=60
    )
    assert result.returncode == 2
    assert "admin_token" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_port_is_one_line_and_exit_2(tmp_path: Path, mesh: Mesh) -> None:
    taken = mesh.console_url.rsplit(":", 1)[1]
    result = meshward("--state-dir", str(tmp_path), "console", "--addr", f"127.0.0.1:{taken}")
    assert result.returncode == 2
    assert f"127.0.0.1:{taken}" in result.stderr and "--addr" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_beyond_loopback_every_page_needs_a_login(tmp_path: Path) -> None:
    import subprocess

    from tests.support.cli import REPO, meshward_argv

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    env = {
        "PYTHONPATH": str(REPO),
        "PATH": "/usr/bin:/bin",
        "MESHWARD_CONSOLE__ADMIN_TOKEN_FILE": str(token_file),
        "MESHWARD_PDP__HTTP_ADDR": f"127.0.0.1:{free_port()}",
    }
    proc = subprocess.Popen(
        meshward_argv("--state-dir", str(tmp_path), "console", "--addr", f"0.0.0.0:{port}"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, timeout=120, process=proc)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base) as client:
            reply = client.get("/policies")
            assert reply.status_code == 303 and reply.headers["location"] == "/login"
            assert client.post("/playground", data={}).status_code == 401
            token = _csrf(client, "/login")
            wrong = client.post("/login", data={"csrf": token, "token": "nope"})
            assert wrong.status_code == 401
            good = client.post("/login", data={"csrf": token, "token": TOKEN})
            assert good.status_code == 303
            session = good.cookies.get("mw_session") or client.cookies.get("mw_session")
            assert session
            assert "httponly" in good.headers["set-cookie"].lower()
            assert client.get("/policies").status_code == 200
        # A forged session cookie is no session.
        forged = httpx.get(base + "/", cookies={"mw_session": "9999999999.abc.def"})
        assert forged.status_code == 303
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert TOKEN not in out
