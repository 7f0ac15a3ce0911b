"""The policy test suite format: YAML files of named requests and expected decisions.

A suite (``tests/*.yaml`` in a bundle) is checked against the JSON Schema in
``policytest.schema.json`` and each case is turned into an
:class:`~authz.engine.model.AccessRequest` when the bundle loads, so a broken case is
a load problem with its file, line and column, never a failure at run time.
A case gives ``principal``/``action``/``resource``/``context`` directly, or a
raw HTTP-style ``request`` that is mapped by the PDP's own request mapping
(:mod:`authz.engine.request`: canonical path, host, joined headers, resource from
``destination``/``service``/``host``; see docs/policies.md for the format).

Running the suites is :mod:`authz.lifecycle.policytest`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema
import yaml

from authz.authn.authenticator import Authenticated
from authz.authn.peer import Peer
from authz.engine.canonical import MalformedRequest, join_headers
from authz.engine.cedar import plain
from authz.engine.model import (
    ANONYMOUS,
    AccessRequest,
    AuthMethod,
    Effect,
    EntityUid,
    Identity,
    InvalidEntityUid,
    issuer_group,
)
from authz.engine.request import (
    DEFAULT_PATHS,
    PathOptions,
    RequestFacts,
    build_request,
    document_context,
    split_target,
)
from authz.errors import BundleError, Problem, RequestError
from meshward.spiffe import InvalidSpiffeId, SpiffeId

__all__ = [
    "TestCase",
    "TestSuite",
    "case_request",
    "load_test_schema",
    "parse_suite",
]


def load_test_schema() -> dict[str, Any]:
    """The JSON Schema of a test suite file (shipped as package data)."""
    text = resources.files("authz.lifecycle").joinpath("testsuite.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True, slots=True)
class TestCase:
    __test__ = False  # not a pytest class

    name: str
    line: int
    request: AccessRequest
    expect: Effect
    reasons: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class TestSuite:
    __test__ = False

    file: str
    name: str
    cases: tuple[TestCase, ...]


def _entity(value: Any) -> EntityUid:
    try:
        return EntityUid.parse(value)
    except InvalidEntityUid as exc:
        raise RequestError(str(exc)) from exc


def _headers(raw: Mapping[str, Any]) -> dict[str, str]:
    items = []
    for name, value in raw.items():
        for one in value if isinstance(value, list) else [value]:
            items.append((str(name), str(one)))
    return join_headers(items)


def _raw_request(
    raw: Mapping[str, Any], identity: Identity | None, paths: PathOptions
) -> AccessRequest:
    """A raw ``request`` mapped as the PDP maps it (:func:`authz.engine.request.build_request`)."""
    peer = None
    if "peer" in raw:
        try:
            peer = Peer(SpiffeId.parse(raw["peer"]), None, "mtls")
        except InvalidSpiffeId as exc:
            raise RequestError(f"request.peer: {exc}") from exc
    if identity is None:
        identity = (
            Identity(EntityUid("Workload", str(peer.spiffe_id)), method=AuthMethod.MTLS)
            if peer is not None
            else ANONYMOUS
        )
    claims = raw.get("claims")
    path, query = split_target(raw.get("path", "/"), raw.get("query", ""))
    facts = RequestFacts(
        adapter="test",
        method=raw["method"],
        path=path,
        host=raw.get("host", ""),
        query=query,
        headers=_headers(raw.get("headers") or {}),
        destination=raw.get("destination", ""),
        service=raw.get("service", ""),
    )
    who = Authenticated(identity, peer, plain(claims) if claims is not None else None)
    return build_request(facts, who, paths)


def _group(principal: EntityUid | None, name: str) -> EntityUid:
    """A ``groups`` entry as the PDP makes it: scoped by the user's issuer, like a token's."""
    if principal is not None and principal.type == "User" and "|" in principal.id:
        return issuer_group(principal.id.partition("|")[0], name)
    return EntityUid("Group", name)


def case_request(case: Mapping[str, Any], paths: PathOptions = DEFAULT_PATHS) -> AccessRequest:
    """The AccessRequest a (schema-valid) case describes; RequestError if it cannot be built.

    A raw ``request`` goes through the PDP's own mapping (:mod:`authz.engine.request`);
    an ambiguous one (say a path with ``%2F``) is a RequestError: the PDP
    would deny it before any policy is asked.
    """
    parents = [_entity(p) for p in case.get("parents", [])]
    named = _entity(case["principal"]) if "principal" in case else None
    parents += [_group(named, g) for g in case.get("groups", [])]
    attributes = case.get("attributes") or {}
    identity = None
    if "principal" in case:
        identity = Identity(_entity(case["principal"]), tuple(parents), attributes)
    action = _entity(case["action"]) if "action" in case else None
    resource = _entity(case["resource"]) if "resource" in case else None
    context: dict[str, Any] = dict(case.get("context") or {})
    raw = case.get("request")
    if "http" in context:
        method = action or EntityUid("Action", str(raw.get("method", "")) if raw else "")
        try:
            context = document_context(context, method, paths)
        except MalformedRequest as exc:
            raise RequestError(
                f"context.http: the PDP denies it as malformed ({exc.code})"
            ) from exc
        except ValueError as exc:
            raise RequestError(str(exc)) from exc
    if raw is not None:
        try:
            mapped = _raw_request(raw, identity, paths)
        except MalformedRequest as exc:
            raise RequestError(f"request: the PDP denies it as malformed ({exc.code})") from exc
        if identity is None:
            identity = Identity(mapped.principal, tuple(parents), attributes)
        action = action or mapped.action
        if resource is None and mapped.resource.id:
            resource = mapped.resource
        context = {**mapped.context, **context}
    if identity is None:
        identity = Identity(ANONYMOUS.principal, tuple(parents), attributes)
    if action is None or resource is None:
        raise RequestError(
            "a case needs an action and a resource (or a request with a destination or host)"
        )
    return AccessRequest(identity, action, resource, context)


class _Positions:
    """Line/column of a path in a YAML document, from its composed node tree."""

    def __init__(self, text: str) -> None:
        try:
            self._root: yaml.Node | None = yaml.compose(text)
        except yaml.YAMLError:
            self._root = None

    def at(self, path: list[str | int]) -> tuple[int, int]:
        node = self._root
        best = (1, 1)
        for part in path:
            if node is None:
                break
            best = (node.start_mark.line + 1, node.start_mark.column + 1)
            node = _child(node, part)
        if node is not None:
            best = (node.start_mark.line + 1, node.start_mark.column + 1)
        return best


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == part:
                child: yaml.Node = value
                return child
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item
    return None


def parse_suite(file: str, text: str) -> TestSuite:
    """Parse and check one suite; BundleError listing every problem in it."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise BundleError([Problem(file, line, column, "bad-yaml", str(exc))]) from exc
    positions = _Positions(text)
    validator = jsonschema.Draft202012Validator(load_test_schema())
    problems = []
    for error in validator.iter_errors(document):
        path = list(error.absolute_path)
        line, column = positions.at(path)
        where = "/".join(str(p) for p in path) or "(top)"
        problems.append(Problem(file, line, column, "bad-test", f"{where}: {error.message}"))
    if problems:
        raise BundleError(problems)
    cases: list[TestCase] = []
    seen: set[str] = set()
    for index, case in enumerate(document["cases"]):
        line, column = positions.at(["cases", index])
        if case["name"] in seen:
            problems.append(
                Problem(file, line, column, "duplicate-test", f"duplicate case {case['name']!r}")
            )
        seen.add(case["name"])
        try:
            request = case_request(case)
        except RequestError as exc:
            problems.append(Problem(file, line, column, "bad-test", f"{case['name']}: {exc}"))
            continue
        reasons = tuple(sorted(case["reasons"])) if "reasons" in case else None
        cases.append(TestCase(case["name"], line, request, Effect(case["expect"]), reasons))
    if problems:
        raise BundleError(problems)
    return TestSuite(file, str(document.get("name", file)), tuple(cases))
