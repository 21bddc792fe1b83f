"""Pure pieces of the per-request logic: destination keys, the proxy a hop
goes through, redirect targets, origin comparison and whether a body can be
sent again. No I/O, no core calls.
"""

from __future__ import annotations

from typing import Callable, Optional
from urllib.parse import urljoin, urlparse

from requests import PreparedRequest
from requests.utils import get_environ_proxies, prepend_scheme_if_needed, requote_uri, select_proxy
from urllib3.util import Url, parse_url

Items = tuple[tuple[str, str], ...]
Proxies = Optional[dict[str, str]]  # as requests passes them to an adapter's send()

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_key(url: str) -> str:
    """The part of a URL the core decides on: ``scheme://host:port`` (with any
    userinfo, which the core ignores when it reads the host). Cheap: one find, no parsing."""
    end = url.find("/", 8)  # the slash after "scheme://authority" ("https://" is 8 characters)
    return url if end < 0 else url[:end]


def hop(url: str, proxies: Proxies = None) -> tuple[str, str]:
    """(origin key, proxy) of one hop: what the core decides on.

    ``proxies`` are the ones requests hands its adapter for this hop (the
    ``proxies`` keyword of ``send``, which a response hook receives); the
    proxy is then the one the adapter picks (``select_proxy``). Without them,
    the proxies are those a ``requests.Session`` (``trust_env``) takes from the
    environment for this URL, ``NO_PROXY`` applied, as it does for MLflow's
    requests. The proxy is given as the URL requests connects to, without its
    userinfo (the core needs its scheme, host and port), or "" for a direct
    connection.
    """
    chosen = select_proxy(url, get_environ_proxies(url) if proxies is None else proxies)
    return origin_key(url), proxy_url(chosen)


def proxy_url(proxy: str | None) -> str:
    """A proxy setting as the adapter uses it (no scheme means http), without
    userinfo; "" for none. One that does not parse is returned as it is, for
    the core to refuse."""
    if not proxy:
        return ""
    try:
        u = parse_url(prepend_scheme_if_needed(proxy, "http"))
    except Exception:  # urllib3's LocationParseError and friends
        return proxy
    if not u.host:
        return proxy
    return Url(scheme=u.scheme, host=u.host, port=u.port).url


def redirect_proxies(target_url: str, proxies: Proxies) -> dict[str, str]:
    """The proxies requests uses for a redirect's next hop to target_url, given
    those of the hop that was redirected (``Session.rebuild_proxies``, with the
    environment trusted as MLflow's sessions do)."""
    from requests.utils import resolve_proxies

    probe = PreparedRequest()
    probe.url = target_url
    return resolve_proxies(probe, proxies, True)


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) as urllib3 connects to it; None if it cannot be parsed."""
    try:
        u = parse_url(url)
    except Exception:  # urllib3 raises LocationParseError and friends
        return None
    scheme = (u.scheme or "").lower()
    if not u.host or scheme not in _DEFAULT_PORTS:
        return None
    return scheme, u.host.lower(), u.port or _DEFAULT_PORTS[scheme]


def same_origin(a: str, b: str) -> bool:
    """True only when both URLs parse and name the same scheme, host and port."""
    oa = origin(a)
    return oa is not None and oa == origin(b)


def redirect_target(url: str, location: str) -> str:
    """The URL requests will send the next request to, for a redirect from url
    with this Location (as ``SessionRedirectMixin.resolve_redirects`` builds it)."""
    if location.startswith("//"):
        location = f"{urlparse(url).scheme}:{location}"
    if not urlparse(location).netloc:
        return urljoin(url, requote_uri(location))
    return requote_uri(location)


def decode_location(raw: str) -> str:
    """The Location header as requests reads it (latin-1 bytes taken as UTF-8)."""
    try:
        return raw.encode("latin1").decode("utf8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def redirect_headers(current_url: str, target_url: str, lookup: Callable[[str], Items]) -> Items | None:
    """What our headers on the next hop of a redirect must be.

    None: the origin does not change, keep what the request carries.
    Otherwise the headers lookup gives for the target URL (empty when its
    origin is not allowed): the carried ones are removed first in any case.
    """
    if same_origin(current_url, target_url):
        return None
    if origin(target_url) is None:
        return ()
    return lookup(target_url)


def replayable(req: PreparedRequest) -> bool:
    """True when req's body can be sent again exactly: none, bytes or text, or
    a file-like body whose start position is known (``rewind_body``). A
    generator or iterator is used up by the first attempt."""
    body = req.body
    return body is None or isinstance(body, (bytes, bytearray, str)) or isinstance(req._body_position, int)
