"""Fill deploy/nginx/meshward-auth.conf.template: ``python render.py PREFIX KEY=VALUE...``.

Writes ``PREFIX/nginx.conf`` and ``PREFIX/meshward-locations.inc``, and
creates the temp directories; then run ``nginx -e stderr -p PREFIX -c PREFIX/nginx.conf``.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def render(prefix: Path, values: dict[str, str]) -> Path:
    prefix.mkdir(parents=True, exist_ok=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    values = {"PREFIX": str(prefix), **values}
    template = (HERE / "meshward-auth.conf.template").read_text()
    # Only ${UPPER_CASE} placeholders: nginx's own $variables stay as they are.
    text = re.sub(r"\$\{([A-Z_]+)\}", lambda m: values[m.group(1)], template)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    shutil.copy(HERE / "meshward-locations.inc", prefix / "meshward-locations.inc")
    return conf


if __name__ == "__main__":
    pairs = dict(arg.split("=", 1) for arg in sys.argv[2:])
    print(render(Path(sys.argv[1]).resolve(), pairs))
