"""A real 3-master Redis Cluster on free loopback ports (no replicas).

Each node is a :class:`~tests.support.redis.RedisServer` started with
``--cluster-enabled yes`` and its own cluster bus port; ``redis-cli --cluster
create`` assigns the slots, and start-up waits until every node reports
``cluster_state:ok``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port
from tests.support.redis import RedisServer
from tests.support.wait import eventually

__all__ = ["RedisCluster", "redis_cluster"]


@dataclass
class RedisCluster:
    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        """A startup node; the client discovers the others."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def cli(self, node: RedisServer, *args: str) -> str:
        binary = shutil.which("redis-cli")
        if binary is None:
            raise RuntimeError("redis-cli is not installed; run `make system-deps`")
        return subprocess.run(
            [binary, "-h", "127.0.0.1", "-p", str(node.port), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def wait_ok(self, timeout: float = 30.0) -> None:
        eventually(
            lambda: all("cluster_state:ok" in self.cli(n, "cluster", "info") for n in self.nodes),
            timeout,
            0.1,
            "redis cluster_state:ok",
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextmanager
def redis_cluster(workdir: Path, masters: int = 3) -> Iterator[RedisCluster]:
    nodes = []
    for i in range(masters):
        node_dir = workdir / f"node{i}"
        args = ["--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf")]
        args += ["--cluster-port", str(free_port()), "--cluster-node-timeout", "2000"]
        nodes.append(RedisServer(node_dir, extra_args=tuple(args)))
    cluster = RedisCluster(nodes)
    try:
        for node in nodes:
            node.start()
        binary = shutil.which("redis-cli")
        if binary is None:
            raise RuntimeError("redis-cli is not installed; run `make system-deps`")
        subprocess.run(
            [
                binary, "--cluster", "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        cluster.wait_ok()
        yield cluster
    finally:
        cluster.stop()
