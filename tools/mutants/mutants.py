"""The deliberate breakages `make mutants` applies, one at a time, to a copy of
the tree. Each is an exact text replacement in one file: the text must occur
exactly once, so a mutant whose code has changed fails loudly (update it here)
instead of silently testing nothing.

``lang`` says what must be rebuilt: "go" mutants rebuild the library in the
copy and run the Go unit tests first; "python" mutants reuse the built library.
"""

from __future__ import annotations

from typing import NamedTuple


class Mutant(NamedTuple):
    name: str
    path: str
    old: str
    new: str
    lang: str  # "go" or "python"
    why: str  # the missing test a survivor would mean


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="no-host-policy-check",
        path="go/internal/engine/engine.go",
        old="\tif err := checkHost(st.cfg, host); err != nil {",
        new="\tif err := checkHost(st.cfg, host); false && err != nil {",
        lang="go",
        why="the engine hands out headers without applying the host policy",
    ),
    Mutant(
        name="no-singleflight",
        path="go/internal/cache/cache.go",
        old="\treturn c.group.DoChan(key, func() (v any, err error) {",
        new="\treturn c.group.DoChan(key+fmt.Sprint(time.Now().UnixNano()), func() (v any, err error) {",
        lang="go",
        why="concurrent misses of one key each start their own fetch",
    ),
    Mutant(
        name="cache-never-expires",
        path="go/internal/cache/cache.go",
        old="\trefreshAt := e.fetched.Add(RefreshAfter(f.TTL))\n",
        new="\trefreshAt := e.fetched.Add(RefreshAfter(f.TTL) + 1000*time.Hour)\n",
        lang="go",
        why="a cached value is served forever (a rotated secret is never picked up)",
    ),
    Mutant(
        name="no-redirect-strip",
        path="python/mlflow_secrets_auth/provider.py",
        old="        if resp.is_redirect:\n            self._redirect(resp, original)\n",
        new="        if False and resp.is_redirect:\n            self._redirect(resp, original)\n",
        lang="python",
        why="a redirect carries our header to an origin the policy does not allow",
    ),
    Mutant(
        name="header-to-every-host",
        path="go/internal/hostpolicy/hostpolicy.go",
        old='\tif p == nil || t.Host == "" {\n\t\treturn NoMatch\n\t}\n\tfor _, pat := range p.patterns {',
        new="\tif true {\n\t\treturn Allowed\n\t}\n\tfor _, pat := range p.patterns {",
        lang="go",
        why="the host policy allows every destination",
    ),
    Mutant(
        name="address-pattern-matches-names",
        path="go/internal/hostpolicy/hostpolicy.go",
        old="\tif pat.ipv4 != isIPv4(t.Host) {\n\t\treturn false\n\t}\n",
        new="",
        lang="go",
        why="an IPv4 pattern such as 10.*.*.* allows the name 10.www.evil.com",
    ),
)
