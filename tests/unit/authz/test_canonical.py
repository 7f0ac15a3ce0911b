"""The canonical path, host and headers (docs/pdp.md#the-canonical-request)."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.engine.canonical import (
    MalformedRequest,
    canonical_host,
    canonical_path,
    join_headers,
    wire_text,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("/admin/users", "/admin/users"),
        ("/%61dmin/users", "/admin/users"),
        ("/%41%7a%30%2D%2e%5F%7E", "/Az0-._~"),
        ("//admin/users", "/admin/users"),
        ("/admin//users///", "/admin/users/"),
        ("/./admin/users", "/admin/users"),
        ("/x/../admin/users", "/admin/users"),
        ("/x/%2e%2E/admin/users", "/admin/users"),
        ("/../../admin", "/admin"),
        ("/x//../admin", "/admin"),  # slashes merge first, as nginx and Go's path.Clean
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/v1/charges%3F/../../admin", "/admin"),  # %3F is part of the path
        ("/a%3fb", "/a%3Fb"),  # reserved escapes stay, hex upper-cased
        ("/a|b", "/a%7Cb"),  # characters outside pchar are escaped
        ("/my%20file/%23tag", "/my%20file/%23tag"),  # escaped space and # are plain data
        ("/café", "/caf%C3%A9"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%E2%80%94b", "/a%E2%80%94b"),
        ("/.well-known/spiffe", "/.well-known/spiffe"),
        ("/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="),
    ],
)
def test_canonical_path(raw: str, canonical: str) -> None:
    assert canonical_path(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("/admin%2Fusers", "encoded_slash"),
        ("/admin%2fusers", "encoded_slash"),
        ("/a\\admin", "malformed_path"),
        ("/a%5Cadmin", "malformed_path"),
        ("/a%00", "malformed_path"),
        ("/a\x00", "malformed_path"),
        ("/a%0d%0aX: y", "malformed_path"),
        ("/a\tb", "malformed_path"),
        ("/a b", "malformed_path"),
        ("/a#frag", "malformed_path"),
        ("/a%7F", "malformed_path"),
        ("/a%C2%85", "malformed_path"),  # U+0085, a C1 control
        ("/%", "bad_escape"),
        ("/%4", "bad_escape"),
        ("/%zz", "bad_escape"),
        ("/%C3%28", "invalid_utf8"),
        ("/%FF", "invalid_utf8"),
        ("/%ED%A0%80", "invalid_utf8"),  # an encoded surrogate
        ("admin", "malformed_path"),
        ("*", "malformed_path"),
        ("http://x/admin", "malformed_path"),
    ],
)
def test_ambiguous_paths_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        canonical_path(raw)
    assert caught.value.code == reason


def test_encoded_slash_can_be_allowed_and_stays_encoded() -> None:
    assert canonical_path("/a%2fb/../c", allow_encoded_slash=True) == "/c"
    assert canonical_path("/a/%2f/b", allow_encoded_slash=True) == "/a/%2F/b"
    with pytest.raises(MalformedRequest):
        canonical_path("/a%5Cb", allow_encoded_slash=True)


def test_lowercase_for_case_insensitive_upstreams() -> None:
    assert canonical_path("/ADMIN/Users", lowercase=True) == "/admin/users"
    assert canonical_path("/%41dmin/caf%c3%a9?", lowercase=True) == "/admin/caf%C3%A9%3F"


_PATH_CHARS = st.sampled_from(
    [*"abcXYZ019-._~!$&'()*+,;=:@/|{}\"<>^`[]é€", "%41", "%2e", "%2E", "%3f", "%7e", "%c3%a9"]
)


@given(st.lists(_PATH_CHARS, max_size=40).map(lambda parts: "/" + "".join(parts)))
def test_canonical_is_idempotent(raw: str) -> None:
    for options in ({}, {"lowercase": True}, {"allow_encoded_slash": True}):
        once = canonical_path(raw, **options)
        assert canonical_path(once, **options) == once


@given(st.lists(_PATH_CHARS, max_size=40).map(lambda parts: "/" + "".join(parts)))
def test_canonical_has_no_dot_segments_or_empty_segments(raw: str) -> None:
    path = canonical_path(raw)
    segments = path.split("/")[1:]
    assert "." not in segments and ".." not in segments
    assert "" not in segments[:-1]
    assert path.isascii()


@given(st.lists(_PATH_CHARS, max_size=40).map(lambda parts: "/" + "".join(parts)))
def test_canonical_means_what_the_raw_path_means_after_resolution(raw: str) -> None:
    # Decoding both fully and resolving dot segments and slashes gives one path:
    # the canonical form only re-spells the raw one.
    def resolve(path: str) -> str:
        decoded = urllib.parse.unquote(path)
        out: list[str] = []
        for segment in [s for s in decoded.split("/") if s]:
            if segment == "..":
                if out:
                    out.pop()
            elif segment != ".":
                out.append(segment)
        return "/".join(out)

    assert resolve(canonical_path(raw)) == resolve(raw)


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("", ""),
        ("Shop", "shop"),
        ("API.Example.com.:8443", "api.example.com"),
        ("shop:", "shop"),
        ("[::1]:8080", "[::1]"),
        ("10.0.0.1:80", "10.0.0.1"),
    ],
)
def test_canonical_host(raw: str, host: str) -> None:
    assert canonical_host(raw) == host


@pytest.mark.parametrize(
    "raw", ["spiffe://td/x", "a/b", "a b", "a:b:c", "a:123456", "[::1", "a\\b", "h@x"]
)
def test_bad_hosts_are_refused(raw: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        canonical_host(raw)
    assert caught.value.code == "bad_host"


def test_repeated_headers_are_joined_in_order() -> None:
    joined = join_headers([("X-Tenant", "globex"), ("x-tenant", "acme"), ("Accept", "a")])
    assert joined == {"x-tenant": "globex,acme", "accept": "a"}


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "Authorization",
        "host",
        "x-forwarded-client-cert",
        "x-meshward-principal",
        "X-Meshward-Anything",
        "x-original-uri",
        "x-forwarded-uri",
        "x-forwarded-host",
    ],
)
def test_repeated_single_headers_are_refused(name: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        join_headers([(name, "a"), (name.lower(), "b")])
    assert caught.value.code == "repeated_header"


def test_header_count_is_limited() -> None:
    join_headers([("a", "1")] * 4, limit=4)
    with pytest.raises(MalformedRequest) as caught:
        join_headers([("a", "1")] * 5, limit=4)
    assert caught.value.code == "too_many_headers"


def test_wire_text_is_strict_utf8() -> None:
    assert wire_text("/café".encode()) == "/café"
    with pytest.raises(MalformedRequest) as caught:
        wire_text(b"/caf\xe9")
    assert caught.value.code == "invalid_utf8"
