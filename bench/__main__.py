"""Run every benchmark (``make bench``) or the ones named: ``python -m bench policy_scale``.

``python -m bench --help`` lists the benchmarks; ``python -m bench NAME --help``
prints what NAME measures and the environment variables that tune it.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

_HELP = {"-h", "--help"}


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    every = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    asked = [a for a in argv if a not in _HELP]
    unknown = [name for name in asked if name not in every]
    if unknown:
        have = ", ".join(every)
        print(f"unknown benchmark: {', '.join(unknown)} (have: {have})", file=sys.stderr)
        return 2
    if len(asked) < len(argv):  # --help: describe, run nothing
        if not asked:
            print(__doc__)
            print("benchmarks:", ", ".join(every))
        for name in asked:
            print(f"=== bench/{name}.py ===")
            print(importlib.import_module(f"bench.{name}").__doc__)
        return 0
    for name in asked or every:
        print(f"\n=== bench/{name}.py ===", flush=True)
        module = importlib.import_module(f"bench.{name}")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
