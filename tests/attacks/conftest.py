"""One ``meshward pdp serve`` on the attack policies, and a driver per way into a decision."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from authz.engine.request import PathOptions
from tests.attacks.cases import PDP_SETTINGS, POLICIES
from tests.attacks.drivers import (
    ApiDriver,
    CheckDriver,
    Driver,
    ForwardAuthDriver,
    GrpcDriver,
    PolicyTestDriver,
)
from tests.support.cli import REPO
from tests.support.pdp import PdpProcess, pdp_process

PDP_ADAPTERS = ("grpc", "ext_authz", "nginx", "traefik", "api", "check", "policytest")


@pytest.fixture(scope="session")
def attack_policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The policy directory the rows are written against."""
    directory = tmp_path_factory.mktemp("attack-policies")
    shutil.copy(REPO / "policies" / "schema.cedarschema", directory / "schema.cedarschema")
    (directory / "attacks.cedar").write_text(POLICIES)
    return directory


@pytest.fixture(scope="session")
def attack_pdp(
    tmp_path_factory: pytest.TempPathFactory, attack_policies: Path
) -> Iterator[PdpProcess]:
    workdir = tmp_path_factory.mktemp("attack-pdp")
    with pdp_process(workdir, policies=attack_policies, pdp_settings=PDP_SETTINGS) as pdp:
        yield pdp


@pytest.fixture(scope="session")
def grpc_channel(attack_pdp: PdpProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(attack_pdp.grpc_addr) as channel:
        yield channel


@pytest.fixture(scope="session")
def pdp_drivers(
    attack_pdp: PdpProcess, grpc_channel: grpc.Channel, attack_policies: Path
) -> dict[str, Driver]:
    """Every way into a decision the PDP itself offers, by adapter name."""
    paths = PathOptions(case_insensitive=bool(PDP_SETTINGS["case_insensitive_paths"]))
    drivers: list[Driver] = [
        GrpcDriver(grpc_channel),
        ForwardAuthDriver("ext_authz", attack_pdp.http_port),
        ForwardAuthDriver("nginx", attack_pdp.http_port),
        ForwardAuthDriver("traefik", attack_pdp.http_port),
        ApiDriver(attack_pdp.http_port),
        CheckDriver(attack_pdp.workdir / "meshward.toml", attack_policies),
        PolicyTestDriver(attack_policies, paths),
    ]
    return {d.name: d for d in drivers}
