"""Policy reload: activating a 10,000-policy commit, and checks during the swap.

1. Time to activate a commit of a 10,000-policy repository through the
   gate — ``git fetch`` of a real bare remote, ``git archive`` of the tree,
   parse + schema validation, the repository's policy tests, swap — end to
   end, twice: the *first activation* of the 10,000 policies (a new child
   process's first look at them), and a *change* to that active set (a new
   commit that edits one policy: what a PDP does on every push). Then the
   time of each step, one by one in this process, for a cold check and for
   the change. Baseline, side by side: the same for a 10-policy commit, so
   the ratio shows how activation grows with the policy count.
2. p99 latency of checks (``EngineHolder.active`` then ``engine.evaluate``,
   exactly what the decider does), one due every millisecond and timed from
   when it was due, while the gate activates the new commit, against the p99
   of the same checks just before it, in the same process. Measured twice,
   side by side: with the PDP's gate, which checks the bundle in a child
   process (:class:`~authz.sources.bundles.ProcessPreparer`) and only builds
   the engine from the result (a delta against the version it holds:
   :mod:`authz.sources.delta`), and — the baseline — with the whole check in
   a worker thread of the serving process (:func:`prepare_engine`), where
   Cedar holds the GIL the checks need for seconds at a time.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import tempfile
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from authz.engine.bundle import bundle_from_data, read_bundle
from authz.engine.decider import EngineHolder
from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, EntityUid, Identity
from authz.engine.retire import retire
from authz.engine.statementcache import StatementCache
from authz.lifecycle.policytest import run_tests
from authz.sources import delta
from authz.sources.bundles import ProcessPreparer, prepare_engine
from authz.sources.delta import pieces_of
from authz.sources.gate import Gate, Outcome, Prepare
from authz.sources.git import GitSource
from meshward.clock import SystemClock

REPO = Path(__file__).resolve().parents[1]
NS = "spiffe://meshward.local/ns/bench/sa/"
SERVICES = 100


def _git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.test",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.test",
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


def _bundle_files(count: int, revision: int) -> dict[str, str]:
    schema = (REPO / "policies" / "schema.cedarschema").read_text()
    entities = [
        {"uid": {"type": "Service", "id": f"{NS}s{i}"}, "attrs": {}, "parents": []}
        for i in range(SERVICES)
    ]
    policies = []
    for i in range(count):
        path = f"/v{revision}/" if i == 0 else "/api/"
        policies.append(
            f'@id("p{i}")\n'
            f"permit (\n"
            f'  principal == Workload::"{NS}w{i}",\n'
            f'  action in Action::"read",\n'
            f'  resource == Service::"{NS}s{i % SERVICES}"\n'
            f")\n"
            f'when {{ context has http && context.http.path like "{path}*" }};\n'
        )
    tests = (
        "name: bench\ncases:\n"
        "  - name: w1 reads its service\n"
        f'    principal: Workload::"{NS}w1"\n'
        '    action: Action::"GET"\n'
        f'    resource: Service::"{NS}s1"\n'
        "    context: {http: {method: GET, host: s1, path: /api/x, query: '', headers: {}}}\n"
        "    expect: allow\n"
        "  - name: w1 may not write\n"
        f'    principal: Workload::"{NS}w1"\n'
        '    action: Action::"POST"\n'
        f'    resource: Service::"{NS}s1"\n'
        "    expect: deny\n"
    )
    return {
        "schema.cedarschema": schema,
        "entities.json": json.dumps(entities),
        "policies.cedar": "\n".join(policies),
        "tests/bench.yaml": tests,
    }


class Repo:
    def __init__(self, root: Path) -> None:
        self.remote = root / "remote.git"
        self.work = root / "work"
        self.remote.mkdir(parents=True)
        self.work.mkdir()
        _git(self.remote, "init", "-q", "--bare", "--initial-branch=main", ".")
        _git(self.work, "init", "-q", "--initial-branch=main", ".")
        _git(self.work, "remote", "add", "origin", str(self.remote))

    def push(self, files: dict[str, str]) -> str:
        for name, text in files.items():
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            (self.work / name).write_text(text)
        _git(self.work, "add", "-A")
        _git(self.work, "commit", "-q", "-m", "policies")
        _git(self.work, "push", "-q", "origin", "HEAD:refs/heads/main")
        return _git(self.work, "rev-parse", "HEAD")


def _steps(source: GitSource, workdir: Path) -> tuple[dict[str, float], tuple[int, int]]:
    """Each gate step on its own, for the breakdown: a cold check, then a change.

    Also the answer's size for the change: as a delta, and in full.
    """
    out: dict[str, float] = {}
    t = time.perf_counter()
    source.refresh()
    revision = source.latest()
    out["fetch"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        t = time.perf_counter()
        root = source.materialize(revision, Path(tmp))
        out["archive"] = time.perf_counter() - t
        cache = StatementCache()
        t = time.perf_counter()
        held = pieces_of(read_bundle(root, version=revision.version, cache=cache))
        out["parse+validate+index, cold"] = time.perf_counter() - t
        # The next commit: one policy edited (what the child's cache was kept for).
        count = len(list(root.glob("*.cedar")))
        policies = (root / "policies.cedar").read_text()
        (root / "policies.cedar").write_text(policies.replace('"/v', '"/w', 1))
        assert count == 1
        t = time.perf_counter()
        data = read_bundle(root, version=revision.version, cache=cache)
        out["parse+validate+index, change"] = time.perf_counter() - t
        t = time.perf_counter()
        bundle = bundle_from_data(data)
        report = run_tests(bundle, Engine(bundle))
        assert report.ok, report.summary
        out["tests"] = time.perf_counter() - t
        t = time.perf_counter()
        wire = delta.dumps(data, frozenset(held))
        out["answer (child): a delta"] = time.perf_counter() - t
        # What the serving process does with the child's answer.
        t = time.perf_counter()
        Engine(bundle_from_data(delta.loads(wire, held)))
        out["serving side"] = time.perf_counter() - t
        sizes = (len(wire), len(delta.dumps(data, ())))
    return out, sizes


async def _activation(
    count: int, root: Path, prepare: Prepare[Engine]
) -> tuple[float, tuple[dict[str, float], tuple[int, int]]]:
    repo = Repo(root / f"repo{count}")
    repo.push(_bundle_files(count, 1))
    source = GitSource(repo.remote.as_uri(), cache_dir=root / f"cache{count}")
    holder = EngineHolder()
    background = prepare.background if isinstance(prepare, ProcessPreparer) else nullcontext
    gate: Gate[Engine] = Gate(
        source, prepare, clock=SystemClock(), work_dir=root / f"work{count}", background=background
    )
    gate.on_activate(lambda a: retire(holder.swap(a.engine, a.version)))
    await gate.reload()
    sha = repo.push(_bundle_files(count, 2))
    t = time.perf_counter()
    outcome = await gate.reload()
    total = time.perf_counter() - t
    assert outcome is Outcome.ACTIVATED and holder.version == sha, outcome
    repo.push(_bundle_files(count, 3))
    return total, _steps(source, root / f"work{count}")


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


@dataclass
class Swap:
    first: float  # seconds: the first activation of the 10,000 policies
    change: float  # seconds: activating a commit that edits one of them
    before: list[float]  # check latencies before the change, in seconds
    during: list[float]  # ... while the change was being activated
    after: list[float]  # ... in the half second after the swap
    steps: dict[str, float]
    sizes: tuple[int, int]  # bytes of the change's answer: a delta, in full


async def _latency_during_swap(
    root: Path, name: str, prepare: Prepare[Engine], *, steps: bool
) -> Swap:
    repo = Repo(root / f"repo-{name}")
    repo.push(_bundle_files(10_000, 1))
    source = GitSource(repo.remote.as_uri(), cache_dir=root / f"cache-{name}")
    holder = EngineHolder()
    # As the PDP wires it (authz.sources.runtime).
    background = prepare.background if isinstance(prepare, ProcessPreparer) else nullcontext
    gate: Gate[Engine] = Gate(
        source, prepare, clock=SystemClock(), work_dir=root / f"ws-{name}", background=background
    )
    gate.on_activate(lambda a: retire(holder.swap(a.engine, a.version)))
    t = time.perf_counter()
    first = await gate.reload()
    first_seconds = time.perf_counter() - t
    assert first is Outcome.ACTIVATED, first
    requests = [
        AccessRequest(
            Identity(EntityUid("Workload", f"{NS}w{i}")),
            EntityUid("Action", "GET"),
            EntityUid("Service", f"{NS}s{i % SERVICES}"),
            {"http": {"method": "GET", "host": "s", "path": "/api/x", "query": "", "headers": {}}},
        )
        for i in range(1, 10_000, 37)
    ]
    # The first pass over the requests builds the engine's slices: not steady state.
    phase = ["warm-up"]
    samples: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    stop = threading.Event()

    period = 0.001  # one check arrives every millisecond

    def checker() -> None:
        # Latency is measured from when each check was due, not from when this
        # thread got round to it: a check that waits for the GIL waits for real.
        n = 0
        start = time.perf_counter()
        while not stop.is_set():
            due = start + n * period
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            request = requests[n % len(requests)]
            n += 1
            active = holder.active
            assert active is not None
            decision = active[0].evaluate(request)
            elapsed = time.perf_counter() - due
            if not decision.allowed:
                raise RuntimeError(f"unexpected deny: {decision}")
            if phase[0] in samples:
                samples[phase[0]].append(elapsed)

    change = _bundle_files(10_000, 2)  # one policy edited
    thread = threading.Thread(target=checker)
    thread.start()
    await asyncio.sleep(0.6)
    phase[0] = "before"
    await asyncio.sleep(3.0)
    phase[0] = "push"  # the commit is the user's work: in neither window
    await asyncio.to_thread(repo.push, change)
    phase[0] = "during"
    t = time.perf_counter()
    outcome = await gate.reload()
    swap_seconds = time.perf_counter() - t
    phase[0] = "after"  # the new engine builds its slices as the requests come
    await asyncio.sleep(0.5)
    phase[0] = "done"
    stop.set()
    thread.join()
    assert outcome is Outcome.ACTIVATED
    breakdown: dict[str, float] = {}
    sizes = (0, 0)
    if steps:
        repo.push(_bundle_files(10_000, 3))
        breakdown, sizes = _steps(source, root / f"ws-{name}")
    return Swap(
        first_seconds,
        swap_seconds,
        samples["before"],
        samples["during"],
        samples["after"],
        breakdown,
        sizes,
    )


def _latency_lines(label: str, swap: Swap) -> None:
    print(f"  {label}:")
    for phase, values in (("before", swap.before), ("during", swap.during), ("after", swap.after)):
        print(
            f"    {phase:<6}: p50 {statistics.median(values) * 1e6:7.0f} us  "
            f"p99 {_p99(values) * 1e6:9.0f} us  max {max(values) * 1000:7.1f} ms  "
            f"({len(values)} checks)"
        )
    print(f"    p99 during / before: {_p99(swap.during) / _p99(swap.before):.2f}x")
    after = _p99(swap.after) / _p99(swap.before)
    print(f"    p99 after (0.5 s from the swap) / before: {after:.2f}x")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="meshward-bench-reload-") as tmp:
        root = Path(tmp)
        preparer = ProcessPreparer()
        try:
            small_total, (small_steps, _) = asyncio.run(_activation(10, root, preparer))
        finally:
            preparer.close()
        preparer = ProcessPreparer()  # a new child: the first activation is a cold check
        try:
            child = asyncio.run(_latency_during_swap(root, "child", preparer, steps=True))
        finally:
            preparer.close()
        base = asyncio.run(_latency_during_swap(root, "thread", prepare_engine, steps=False))
    print("activation end to end (fetch, archive, parse, validate, test, swap):")
    print(f"  10 policies, a change:         {small_total * 1000:9.1f} ms   (checked in a child)")
    print(f"  10,000 policies, first:        {child.first * 1000:9.1f} ms   (checked in a child)")
    print(f"  10,000 policies, a change:     {child.change * 1000:9.1f} ms   (checked in a child)")
    print(f"  baseline, in a thread, first:  {base.first * 1000:9.1f} ms")
    print(f"  baseline, in a thread, change: {base.change * 1000:9.1f} ms")
    print(f"  ratio 10,000 / 10 (a change): {child.change / small_total:.1f}x")
    print("  steps, one by one in this process (10,000 policies vs 10):")
    for step, seconds in child.steps.items():
        print(f"    {step:<30} {seconds * 1000:9.1f} ms   vs {small_steps[step] * 1000:7.1f} ms")
    print(
        f"  the change's answer: {child.sizes[0] / 1000:.0f} kB as a delta against the held"
        f" version, {child.sizes[1] / 1e6:.1f} MB in full"
    )
    print("check latency at 10,000 policies, before and while the gate activates a change:")
    _latency_lines("check in a child process (the PDP)", child)
    _latency_lines("baseline: check in a thread of the serving process", base)
    print(
        f"  p99 during the swap, child / thread: {_p99(child.during) / _p99(base.during):.3f}x "
        "(cedarpy holds the GIL for each call on the whole set)"
    )


if __name__ == "__main__":
    main()
