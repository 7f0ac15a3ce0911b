"""Every Envoy config under deploy/ parses into Envoy's own Bootstrap proto.

The protos are xds-protos' generated code, so an unknown field, a wrong enum
name or an ``@type`` that Envoy does not know fails here as it would in Envoy.
Every ``typed_config`` is resolved: the module defining its type is imported
from its proto package, so the ``Any`` is parsed field by field, not skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format

from tests.integration.deploy.conftest import DEPLOY, deploy_files, ids
from tests.support.envoy_config import TYPE_PREFIX, load_document, parse_bootstrap
from tests.support.envoy_config import typed_configs as _typed_configs

ENVOY_FILES = deploy_files("envoy", ".yaml", ".yml", ".json")


def test_envoy_configs_exist() -> None:
    assert ENVOY_FILES, "deploy/envoy/ holds no config"


@pytest.mark.parametrize("path", ENVOY_FILES, ids=ids(ENVOY_FILES))
def test_envoy_config_parses_into_bootstrap(path: Path) -> None:
    bootstrap = parse_bootstrap(load_document(path))
    assert bootstrap.static_resources.listeners or bootstrap.static_resources.clusters
    clusters = {c.name for c in bootstrap.static_resources.clusters}
    # Every cluster a gRPC service or route names is defined in the file.
    text = json_format.MessageToJson(bootstrap)
    for name in _referenced_clusters(json.loads(text).get("staticResources", {})):
        assert name in clusters, f"{path.name}: cluster {name!r} is not defined"


def _referenced_clusters(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"clusterName", "cluster"} and isinstance(value, str):
                yield value
            else:
                yield from _referenced_clusters(value)
    elif isinstance(node, list):
        for value in node:
            yield from _referenced_clusters(value)


@pytest.mark.parametrize("path", ENVOY_FILES, ids=ids(ENVOY_FILES))
def test_every_ext_authz_filter_fails_closed_with_a_timeout(path: Path) -> None:
    bootstrap = parse_bootstrap(load_document(path))
    filters = list(_typed_configs(bootstrap, ext_authz_pb2.ExtAuthz))
    for ext_authz in filters:
        assert ext_authz.failure_mode_allow is False
        if ext_authz.HasField("grpc_service"):
            assert ext_authz.grpc_service.timeout.ToMilliseconds() > 0
            assert ext_authz.include_peer_certificate
        else:
            assert ext_authz.http_service.server_uri.timeout.ToMilliseconds() > 0
            assert ext_authz.http_service.path_prefix == "/ext_authz"
            # The resource is pinned by the sidecar, never the client's Host.
            added = {
                h.key: h.value for h in ext_authz.http_service.authorization_request.headers_to_add
            }
            assert added.get("x-meshward-destination", "").startswith("spiffe://")


@pytest.mark.parametrize("path", ENVOY_FILES, ids=ids(ENVOY_FILES))
def test_connection_managers_in_front_of_the_pdp_trust_no_client_forwarding(
    path: Path,
) -> None:
    # What the PDP trusts as the peer and its certificate comes from Envoy's own
    # view: a client's XFCC is dropped or overwritten, and its X-Forwarded-For
    # never becomes the source address the PDP's trusted_proxies match.
    for hcm in _typed_configs(parse_bootstrap(load_document(path)), hcm_pb2.HttpConnectionManager):
        if not any(f.name == "envoy.filters.http.ext_authz" for f in hcm.http_filters):
            continue
        assert hcm.use_remote_address.value is True
        assert hcm.xff_num_trusted_hops == 0
        assert hcm.forward_client_cert_details in (
            hcm_pb2.HttpConnectionManager.SANITIZE,
            hcm_pb2.HttpConnectionManager.SANITIZE_SET,
        )


def test_both_ext_authz_transports_are_shown() -> None:
    kinds = set()
    for path in ENVOY_FILES:
        for ext_authz in _typed_configs(
            parse_bootstrap(load_document(path)), ext_authz_pb2.ExtAuthz
        ):
            kinds.add(ext_authz.WhichOneof("services"))
    assert kinds >= {"grpc_service", "http_service"}


def test_connection_managers_resolve_their_filters() -> None:
    """The nested Any inside the HTTP connection manager is parsed too."""
    found = 0
    for path in ENVOY_FILES:
        for hcm in _typed_configs(
            parse_bootstrap(load_document(path)), hcm_pb2.HttpConnectionManager
        ):
            assert hcm.http_filters
            found += 1
    assert found


# The validator itself must reject what Envoy rejects.


def _minimal(extra_filter_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "l",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": TYPE_PREFIX + "envoy.extensions.filters.network."
                                        "http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "x",
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.ext_authz",
                                                "typed_config": extra_filter_config,
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    }


def test_validator_accepts_a_minimal_config() -> None:
    config = _minimal(
        {"@type": TYPE_PREFIX + "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"}
    )
    assert parse_bootstrap(config).static_resources.listeners[0].name == "l"


@pytest.mark.parametrize(
    "typed_config",
    [
        # A field ExtAuthz does not have, deep inside two Any layers.
        {
            "@type": TYPE_PREFIX + "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "failure_mode_allows": False,
        },
        # A type Envoy does not know.
        {"@type": TYPE_PREFIX + "envoy.extensions.filters.http.ext_authz.v3.NoSuchThing"},
        # A wrong value type.
        {
            "@type": TYPE_PREFIX + "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "failure_mode_allow": "maybe",
        },
    ],
    ids=["unknown-field", "unknown-type", "bad-value"],
)
def test_validator_rejects_what_envoy_rejects(typed_config: dict[str, Any]) -> None:
    with pytest.raises(json_format.ParseError):
        parse_bootstrap(_minimal(typed_config))


def test_validator_rejects_an_unknown_top_level_field() -> None:
    with pytest.raises(json_format.ParseError):
        parse_bootstrap({"static_resource": {}})


def test_deploy_dir_is_the_repository_one() -> None:
    assert (DEPLOY / "envoy").is_dir()
