"""The pure per-request pieces: destination keys, origins, redirect targets and
decisions, and the 401 refetch rate limit (injected clock)."""

from __future__ import annotations

import pytest
from mlflow_secrets_auth import _hooks


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://mlflow.corp.com/api/2.0/mlflow/runs/get?run_id=1", "https://mlflow.corp.com"),
        ("http://127.0.0.1:5000/api", "http://127.0.0.1:5000"),
        ("http://h/x", "http://h"),
        ("https://[::1]:8443/p", "https://[::1]:8443"),
        ("https://host:8443", "https://host:8443"),
        ("http://user:pw@h:1/p", "http://user:pw@h:1"),  # the core reads the host past the userinfo
    ],
)
def test_origin_key_is_scheme_and_authority(url: str, key: str) -> None:
    assert _hooks.origin_key(url) == key


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://h/a", "http://h:80/b", True),
        ("https://H.example/a", "https://h.example:443/", True),
        ("http://h/a", "https://h/a", False),  # scheme
        ("http://h:5000/", "http://h:5001/", False),  # port
        ("http://127.0.0.1:5000/", "http://localhost:5000/", False),  # host, even if it resolves alike
        ("http://127.0.0.1:5000/", "http://127.0.0.2:5000/", False),
        ("http://h:5000/", "ftp://h:5000/", False),
        ("http://h:5000/", "http://h:99999/", False),  # unparseable: never "same"
        ("http://h:5000/", "http://:5000/", False),
    ],
)
def test_same_origin(a: str, b: str, same: bool) -> None:
    assert _hooks.same_origin(a, b) is same


@pytest.mark.parametrize(
    ("location", "target"),
    [
        ("/next?x=1", "http://h:5000/next?x=1"),
        ("next", "http://h:5000/a/next"),
        ("//other:81/p", "http://other:81/p"),
        ("https://h/p q", "https://h/p%20q"),
        ("http://127.0.0.2:6000/api", "http://127.0.0.2:6000/api"),
    ],
)
def test_redirect_target_matches_requests(location: str, target: str) -> None:
    assert _hooks.redirect_target("http://h:5000/a/b", location) == target


def test_redirect_target_is_where_requests_goes() -> None:
    """Same answer as requests' own resolve_redirects, for the targets above."""
    import requests

    session = requests.Session()
    for location in ("/next?x=1", "next", "//other:81/p", "https://h/p q"):
        resp = requests.Response()
        resp.status_code, resp.url = 302, "http://h:5000/a/b"
        resp.headers["location"] = location
        resp.request = requests.Request("GET", resp.url).prepare()
        resp._content = b""
        hop = next(session.resolve_redirects(resp, resp.request, yield_requests=True))
        assert hop.url == _hooks.redirect_target(resp.url, location)


OURS = (("X-Api-Key", "tok"),)


def lookup_allowing(*allowed: str):  # type: ignore[no-untyped-def]
    asked: list[str] = []

    def lookup(key: str) -> _hooks.Items:
        asked.append(key)
        return OURS if key in allowed else ()

    return lookup, asked


def test_redirect_within_the_origin_keeps_the_headers_without_asking() -> None:
    lookup, asked = lookup_allowing()
    assert _hooks.redirect_headers("http://h:5000/a", "http://h:5000/b", OURS, lookup) is None
    assert asked == []


@pytest.mark.parametrize(
    "target",
    ["http://h:5001/a", "https://h:5000/a", "http://127.0.0.2:5000/a", "http://localhost:5000/a", "http://evil/a"],
)
def test_redirect_to_another_origin_asks_the_core_for_that_origin(target: str) -> None:
    lookup, asked = lookup_allowing()
    assert _hooks.redirect_headers("http://h:5000/a", target, OURS, lookup) == ()
    assert asked == [_hooks.origin_key(target)]


def test_redirect_to_an_allowed_origin_gets_that_origins_headers() -> None:
    lookup, asked = lookup_allowing("https://h")
    assert _hooks.redirect_headers("http://h/a", "https://h/a", OURS, lookup) == OURS
    assert asked == ["https://h"]


def test_redirect_to_something_unparseable_gets_nothing_and_asks_nothing() -> None:
    lookup, asked = lookup_allowing("http://h:99999")
    assert _hooks.redirect_headers("http://h:5000/a", "http://h:99999/a", OURS, lookup) == ()
    assert asked == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refetch_limiter_allows_one_per_credential_per_interval() -> None:
    clock = Clock()
    limiter = _hooks.RefetchLimiter(5.0, clock)
    a, b = (("Authorization", "Basic a"),), (("Authorization", "Basic b"),)
    assert limiter.allow(a)
    assert not limiter.allow(a)
    assert limiter.allow(b)  # per credential
    clock.now += 4.999
    assert not limiter.allow(a)
    clock.now += 0.001
    assert limiter.allow(a)
    assert not limiter.allow(a)


def test_refetch_limiter_stays_small() -> None:
    clock = Clock()
    limiter = _hooks.RefetchLimiter(5.0, clock)
    for i in range(1000):
        clock.now += 1.0
        assert limiter.allow((("X", str(i)),))
    assert len(limiter._last) <= 257


def test_fingerprint_does_not_hold_the_secret() -> None:
    fp = _hooks.fingerprint((("Authorization", "Bearer s3cr3t-value"),))
    assert "s3cr3t" not in fp
    assert fp != _hooks.fingerprint((("Authorization", "Bearer other"),))
