"""Fill deploy/nginx/meshward-auth.conf.template.

    python3 deploy/nginx/render.py PREFIX LISTEN=… HOST=… PDP=… UPSTREAM=… \
        [TLS_LISTEN=… TLS_CERT=… TLS_KEY=… CLIENT_CA=…]

Writes ``PREFIX/nginx.conf`` and ``PREFIX/meshward-locations.inc``, creates
the temp directories and prints the config's path; then run
``nginx -e stderr -p PREFIX -c PREFIX/nginx.conf``. Without ``TLS_LISTEN``
the mTLS listener is left out. A missing or unknown value: exit 2.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIRED = ("LISTEN", "HOST", "PDP", "UPSTREAM")
TLS = ("TLS_LISTEN", "TLS_CERT", "TLS_KEY", "CLIENT_CA")
_TLS_BLOCK = re.compile(
    r"^[ \t]*# mTLS listener \(begin\)\n.*?# mTLS listener \(end\)\n", re.S | re.M
)
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")  # nginx's own $variables stay as they are


class RenderError(ValueError):
    """Values missing, unknown or unsafe for the template."""


def render(prefix: Path, values: dict[str, str]) -> Path:
    """Write the config for ``values`` under ``prefix``; return the config's path."""
    tls = "TLS_LISTEN" in values
    needed = set(REQUIRED) | (set(TLS) if tls else set())
    missing = sorted(needed - set(values))
    unknown = sorted(set(values) - set(REQUIRED) - set(TLS))
    if missing or unknown:
        raise RenderError(f"missing {missing}, unknown {unknown}")
    for key, value in values.items():
        if not value or re.search(r"[\s;{}\"'$]", value):
            raise RenderError(f"{key}: empty, or a character nginx would interpret")
    template = (HERE / "meshward-auth.conf.template").read_text()
    if not tls:
        template = _TLS_BLOCK.sub("", template)
    prefix.mkdir(parents=True, exist_ok=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    filled = {"PREFIX": str(prefix), **values}
    text = _PLACEHOLDER.sub(lambda m: filled[m.group(1)], template)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    shutil.copy(HERE / "meshward-locations.inc", prefix / "meshward-locations.inc")
    return conf


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any("=" not in arg for arg in argv[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        conf = render(Path(argv[0]).resolve(), dict(arg.split("=", 1) for arg in argv[1:]))
    except RenderError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    print(conf)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
