"""The pure per-request pieces: destination keys, the proxy of a hop, origins,
redirect targets and decisions, and which bodies can be sent again."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import requests
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

    def lookup(url: str) -> _hooks.Items:
        asked.append(url)
        return OURS if _hooks.origin_key(url) in allowed else ()

    return lookup, asked


def test_redirect_within_the_origin_keeps_the_headers_without_asking() -> None:
    lookup, asked = lookup_allowing()
    assert _hooks.redirect_headers("http://h:5000/a", "http://h:5000/b", lookup) is None
    assert asked == []


@pytest.mark.parametrize(
    "target",
    ["http://h:5001/a", "https://h:5000/a", "http://127.0.0.2:5000/a", "http://localhost:5000/a", "http://evil/a"],
)
def test_redirect_to_another_origin_asks_for_that_hop(target: str) -> None:
    lookup, asked = lookup_allowing()
    assert _hooks.redirect_headers("http://h:5000/a", target, lookup) == ()
    assert asked == [target]


def test_redirect_to_an_allowed_origin_gets_that_origins_headers() -> None:
    lookup, asked = lookup_allowing("https://h")
    assert _hooks.redirect_headers("http://h/a", "https://h/a", lookup) == OURS
    assert asked == ["https://h/a"]


def test_redirect_to_something_unparseable_gets_nothing_and_asks_nothing() -> None:
    lookup, asked = lookup_allowing("http://h:99999")
    assert _hooks.redirect_headers("http://h:5000/a", "http://h:99999/a", lookup) == ()
    assert asked == []


# --------------------------------------------------------------------------- #
# The proxy of a hop
# --------------------------------------------------------------------------- #

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "request_method")


@pytest.fixture()
def proxy_env(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.mark.parametrize(
    ("env", "url", "proxy"),
    [
        ({}, "http://localhost:5000/api", ""),
        ({"HTTP_PROXY": "http://proxy.corp:3128"}, "http://localhost:5000/api", "http://proxy.corp:3128"),
        ({"HTTP_PROXY": "http://proxy.corp:3128"}, "https://mlflow.corp:443/api", ""),  # only for http
        ({"HTTPS_PROXY": "https://p.corp"}, "https://mlflow.corp/api", "https://p.corp"),
        ({"ALL_PROXY": "http://p.corp:8080"}, "https://mlflow.corp/api", "http://p.corp:8080"),
        ({"HTTP_PROXY": "proxy.corp:3128"}, "http://h/api", "http://proxy.corp:3128"),  # no scheme: http
        ({"HTTP_PROXY": "http://user:pw@proxy.corp:3128/"}, "http://h/api", "http://proxy.corp:3128"),
        ({"HTTP_PROXY": "http://proxy.corp:3128", "NO_PROXY": "localhost"}, "http://localhost:5000/api", ""),
        ({"HTTP_PROXY": "http://proxy.corp:3128", "no_proxy": ".corp.com"}, "http://m.corp.com/api", ""),
        ({"HTTP_PROXY": "http://proxy.corp:3128", "NO_PROXY": "127.0.0.0/8"}, "http://127.0.0.1:5000/a", ""),
        ({"HTTP_PROXY": "http://proxy.corp:3128", "NO_PROXY": "*"}, "http://h/api", ""),
        ({"HTTP_PROXY": "http://proxy.corp:3128", "NO_PROXY": "other"}, "http://h/api", "http://proxy.corp:3128"),
    ],
)
def test_hop_from_the_environment(proxy_env, env: dict[str, str], url: str, proxy: str) -> None:  # type: ignore[no-untyped-def]
    proxy_env(**env)
    assert _hooks.hop(url) == (_hooks.origin_key(url), proxy)


@pytest.mark.parametrize(
    ("proxies", "proxy"),
    [
        ({}, ""),
        ({"http": "http://p:1"}, "http://p:1"),
        ({"https": "http://p:1"}, ""),
        ({"http://h": "http://specific:2", "http": "http://p:1"}, "http://specific:2"),
        ({"all": "socks5://s:1080"}, "socks5://s:1080"),
    ],
)
def test_hop_with_the_proxies_of_the_hop(proxy_env, proxies: dict[str, str], proxy: str) -> None:  # type: ignore[no-untyped-def]
    proxy_env(HTTP_PROXY="http://from-env:9")  # not read: the hop's proxies are given
    assert _hooks.hop("http://h:5000/x", proxies) == ("http://h:5000", proxy)


def test_hop_is_the_proxy_a_session_connects_through(proxy_env) -> None:  # type: ignore[no-untyped-def]
    """The same answer as requests: merge_environment_settings, then the adapter's select_proxy."""
    from requests.utils import select_proxy

    session = requests.Session()
    cases = [
        ({"HTTP_PROXY": "http://p:3128"}, "http://localhost:5000/a"),
        ({"HTTP_PROXY": "http://p:3128", "NO_PROXY": "localhost"}, "http://localhost:5000/a"),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "other.example"}, "https://mlflow.example/a"),
        ({"ALL_PROXY": "http://p:3128", "NO_PROXY": "example"}, "https://mlflow.example/a"),
    ]
    for env, url in cases:
        proxy_env(**{k: "" for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")})
        proxy_env(**env)
        merged = session.merge_environment_settings(url, {}, None, None, None)["proxies"]
        assert _hooks.hop(url)[1] == (select_proxy(url, merged) or ""), (env, url)


@pytest.mark.parametrize(
    ("given", "env", "target"),
    [
        ({"http": "http://p:1"}, {}, "http://other:2/x"),
        ({}, {"HTTP_PROXY": "http://p:1"}, "http://other:2/x"),
        ({}, {"HTTP_PROXY": "http://p:1", "NO_PROXY": "other"}, "http://other:2/x"),
        # Kept by requests even for a NO_PROXY target: the hop's own proxies are copied.
        ({"http": "http://p:1"}, {"NO_PROXY": "other"}, "http://other:2/x"),
        ({}, {"HTTPS_PROXY": "http://p:1"}, "https://other/x"),
    ],
)
def test_redirect_proxies_are_those_requests_uses(proxy_env, given, env, target) -> None:  # type: ignore[no-untyped-def]
    proxy_env(**env)
    probe = requests.Request("GET", target).prepare()
    expected = requests.Session().rebuild_proxies(probe, dict(given))
    assert _hooks.redirect_proxies(target, dict(given)) == expected


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("", ""),
        (None, ""),
        ("http://p:3128", "http://p:3128"),
        ("p.corp:3128", "http://p.corp:3128"),
        ("p:3128", "p:3128"),  # requests reads "p" as a scheme (p:///3128): left for the core to refuse
        ("HTTP://P.Corp:3128", "http://p.corp:3128"),
        ("http://u:secret@p:3128/path", "http://p:3128"),
        ("https://p", "https://p"),
        ("http://:3128", "http://:3128"),  # no host: left for the core to refuse
    ],
)
def test_proxy_url(raw: str | None, shown: str) -> None:
    assert _hooks.proxy_url(raw) == shown


# --------------------------------------------------------------------------- #
# Bodies that can be sent again
# --------------------------------------------------------------------------- #


def body_of(data: object) -> requests.PreparedRequest:
    return requests.Request("POST", "http://h/x", data=data).prepare()


def chunks() -> Iterator[bytes]:
    yield b"a"
    yield b"b"


class NoTell(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        raise OSError("not seekable")


@pytest.mark.parametrize(
    ("data", "ok"),
    [
        (None, True),
        (b"bytes", True),
        ("text", True),
        ({"form": "1"}, True),
        (bytearray(b"x"), True),
        (io.BytesIO(b"file"), True),
        (chunks(), False),  # a generator
        (iter([b"a", b"b"]), False),  # an iterator
        (NoTell(), False),  # a file whose position is unknown
    ],
)
def test_replayable(data: object, ok: bool) -> None:
    assert _hooks.replayable(body_of(data)) is ok


def test_replayable_json_and_files() -> None:
    assert _hooks.replayable(requests.Request("POST", "http://h/x", json={"a": 1}).prepare())
    assert _hooks.replayable(requests.Request("POST", "http://h/x", files={"f": b"x"}).prepare())
