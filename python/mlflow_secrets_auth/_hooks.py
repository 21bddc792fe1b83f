"""Pure pieces of the per-request logic: destination keys, redirect targets,
origin comparison and the 401 refetch rate limit. No I/O, no core calls.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Callable
from urllib.parse import urljoin, urlparse

from requests.utils import requote_uri
from urllib3.util import parse_url

Items = tuple[tuple[str, str], ...]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_key(url: str) -> str:
    """The part of a URL the core decides on: ``scheme://host:port`` (with any
    userinfo, which the core ignores when it reads the host). Cheap: one find, no parsing."""
    end = url.find("/", 8)  # the slash after "scheme://authority" ("https://" is 8 characters)
    return url if end < 0 else url[:end]


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


def redirect_headers(
    current_url: str, target_url: str, carried: Items, lookup: Callable[[str], Items]
) -> Items | None:
    """What our headers on the next hop of a redirect must be.

    None: the origin does not change, keep what the request carries.
    Otherwise the headers the core gives for the target's origin (empty when
    it is not allowed): the carried ones are removed first in any case.
    """
    if same_origin(current_url, target_url):
        return None
    if origin(target_url) is None:
        return ()
    return lookup(origin_key(target_url))


def fingerprint(items: Items) -> str:
    """A stable name for a credential that does not keep the credential itself."""
    h = hashlib.sha256()
    for name, value in items:
        h.update(name.lower().encode() + b"\0" + value.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


class RefetchLimiter:
    """At most one refetch per credential per ``interval`` seconds."""

    def __init__(self, interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def allow(self, credential: Items) -> bool:
        key = fingerprint(credential)
        now = self._clock()
        with self._lock:
            if len(self._last) > 256:  # forget old entries; a few credentials are live at once
                self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                return False
            self._last[key] = now
            return True
