"""Every nginx config under deploy/nginx/ passes the real ``nginx -t``.

Each runs with a throw-away prefix (no root paths, no system files): the
config is copied to ``PREFIX/conf/``, and every certificate or key file it
names (relative to that directory) is created with the real ``openssl``, so
nginx loads real PEM files. A config that is a fragment (no ``events`` block)
is tested inside a minimal main config.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.deploy.conftest import DEPLOY, deploy_files, ids
from tests.support.net import free_port

ALL_CONF = deploy_files("nginx", ".conf")
TEMPLATES = deploy_files("nginx", ".conf.template")
RENDER = DEPLOY / "nginx" / "render.py"


def _included_by_templates() -> set[str]:
    """Fragments a template includes: they are tested inside the rendered template."""
    text = "\n".join(t.read_text(encoding="utf-8") for t in TEMPLATES)
    return {name for name in (p.name for p in ALL_CONF) if name in text}


NGINX_FILES = [p for p in ALL_CONF if p.name not in _included_by_templates()]
_FILE_DIRECTIVES = re.compile(
    r"^\s*(ssl_certificate|ssl_certificate_key|ssl_client_certificate|ssl_trusted_certificate)"
    r"\s+([^;\s]+)\s*;",
    re.M,
)


def _nginx() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise RuntimeError("nginx is not installed; run `make system-deps`")
    return found


def _make_pem_files(config: str, conf_dir: Path) -> None:
    """Create a self-signed certificate and key at every path the config names."""
    key = conf_dir / "_test_key.pem"
    cert = conf_dir / "_test_cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=meshward-test",
         "-days", "1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    for directive, value in _FILE_DIRECTIVES.findall(config):
        if value.startswith("$"):
            continue
        assert not value.startswith("/"), f"{directive} {value}: use a path relative to the prefix"
        target = conf_dir / value
        target.parent.mkdir(parents=True, exist_ok=True)
        source = key if directive == "ssl_certificate_key" else cert
        shutil.copyfile(source, target)


def nginx_test(config_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    prefix = tmp_path / "nginx"
    conf_dir = prefix / "conf"
    (prefix / "logs").mkdir(parents=True)
    conf_dir.mkdir(parents=True)
    if not re.search(r"^\s*events\s*\{", config_text, re.M):
        (conf_dir / "fragment.conf").write_text(config_text, encoding="utf-8")
        config_text = "events {}\nhttp {\n    include fragment.conf;\n}\n"
    (conf_dir / "nginx.conf").write_text(config_text, encoding="utf-8")
    _make_pem_files(config_text + "\n" + _fragment(conf_dir), conf_dir)
    return subprocess.run(
        [_nginx(), "-t", "-q", "-p", str(prefix), "-c", "conf/nginx.conf",
         "-e", str(prefix / "logs" / "error.log"), "-g", f"pid {prefix}/nginx.pid;"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def _fragment(conf_dir: Path) -> str:
    fragment = conf_dir / "fragment.conf"
    return fragment.read_text(encoding="utf-8") if fragment.exists() else ""


def test_nginx_configs_exist() -> None:
    assert NGINX_FILES


@pytest.mark.parametrize("path", NGINX_FILES, ids=ids(NGINX_FILES))
def test_nginx_config_passes_nginx_t(path: Path, tmp_path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    # `-g pid` is given on the command line: a pid line in the file would clash.
    text = re.sub(r"^\s*pid\s+[^;]+;", "", text, flags=re.M)
    done = nginx_test(text, tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", NGINX_FILES, ids=ids(NGINX_FILES))
def test_nginx_config_asks_the_pdp(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "auth_request" in text
    assert "/auth/nginx" in text


@pytest.mark.parametrize("template", TEMPLATES, ids=ids(TEMPLATES))
def test_nginx_template_renders_and_passes_nginx_t(template: Path, tmp_path: Path) -> None:
    """Render with deploy/nginx/render.py (real files, loopback ports), then ``nginx -t``."""
    assert RENDER.is_file(), "a template needs deploy/nginx/render.py"
    prefix = tmp_path / "prefix"
    certs = tmp_path / "certs"
    certs.mkdir()
    _make_pem_files("ssl_certificate a.pem;\nssl_certificate_key a.key;\n", certs)
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", template.read_text(encoding="utf-8")))
    values = {
        "LISTEN": f"127.0.0.1:{free_port()}",
        "HOST": "orders.shop.test",
        "TLS_LISTEN": f"127.0.0.1:{free_port()}",
        "TLS_CERT": str(certs / "a.pem"),
        "TLS_KEY": str(certs / "a.key"),
        "CLIENT_CA": str(certs / "a.pem"),
        "PDP": f"127.0.0.1:{free_port()}",
        "UPSTREAM": f"127.0.0.1:{free_port()}",
    }
    assert placeholders - {"PREFIX"} <= set(values), "a placeholder this test does not fill"
    done = subprocess.run(
        [sys.executable, str(RENDER), str(prefix), *(f"{k}={v}" for k, v in values.items())],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    conf = Path(done.stdout.strip())
    checked = subprocess.run(
        [_nginx(), "-t", "-q", "-e", "stderr", "-p", str(prefix), "-c", str(conf)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_nginx_t_rejects_a_broken_config(tmp_path: Path) -> None:
    done = nginx_test(
        "events {}\nhttp { server { listen 127.0.0.1:1; no_such_directive on; } }\n", tmp_path
    )
    assert done.returncode != 0


def test_render_refuses_missing_and_unsafe_values(tmp_path: Path) -> None:
    def render(*pairs: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(RENDER), str(tmp_path / "prefix"), *pairs],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    missing = render("LISTEN=127.0.0.1:8080", "PDP=127.0.0.1:8181")
    assert missing.returncode == 2
    assert "HOST" in missing.stderr and "UPSTREAM" in missing.stderr
    tls_half = render(
        "LISTEN=127.0.0.1:8080", "HOST=a.test", "PDP=127.0.0.1:8181",
        "UPSTREAM=127.0.0.1:9000", "TLS_LISTEN=127.0.0.1:8443",
    )  # fmt: skip
    assert tls_half.returncode == 2
    assert "CLIENT_CA" in tls_half.stderr
    injected = render(
        "LISTEN=127.0.0.1:8080", "HOST=a.test; return 200", "PDP=127.0.0.1:8181",
        "UPSTREAM=127.0.0.1:9000",
    )  # fmt: skip
    assert injected.returncode == 2
    assert not (tmp_path / "prefix" / "nginx.conf").exists()
