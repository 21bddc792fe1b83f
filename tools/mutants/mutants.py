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
        old="\tif err := checkHop(ch.cfg, req.Target, req.Proxy); err != nil {\n\t\treturn Result{Err: err}\n\t}\n\tctx, cancel",
        new="\tif err := checkHop(ch.cfg, req.Target, req.Proxy); false && err != nil {\n\t\treturn Result{Err: err}\n\t}\n\tctx, cancel",
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
        old="\te.refreshAt = e.fetched.Add(RefreshAfter(e.ttl, e.jitter))\n\te.staleAt = e.fetched.Add(e.ttl)\n",
        new="\te.refreshAt = e.fetched.Add(RefreshAfter(e.ttl, e.jitter) + 1000*time.Hour)\n\te.staleAt = e.fetched.Add(e.ttl + 1000*time.Hour)\n",
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
    # Issue 13: one mutant per egress rule.
    Mutant(
        name="vault-follows-redirects",
        path="go/internal/egress/egress.go",
        old="\tcfg.DisableRedirects = true\n",
        new="\tcfg.DisableRedirects = false\n",
        lang="go",
        why="the Vault API client follows a 307 from VAULT_ADDR with the token or the AppRole login body",
    ),
    Mutant(
        name="no-proxy-hop-check",
        path="go/internal/engine/hostcheck.go",
        old="\tif t.Scheme == \"https\" || cfg.AllowHTTP || p.Scheme == \"https\" || p.Loopback() {\n",
        new="\tif true || t.Scheme == \"https\" || cfg.AllowHTTP || p.Scheme == \"https\" || p.Loopback() {\n",
        lang="go",
        why="an http hop through a proxy that is not loopback carries the credential in cleartext",
    ),
    Mutant(
        name="python-ignores-the-proxy",
        path="python/mlflow_secrets_auth/_hooks.py",
        old="    return origin_key(url), proxy_url(chosen)\n",
        new="    return origin_key(url), \"\"\n",
        lang="python",
        why="the core is never told which proxy a hop goes through, so cleartext to a proxy passes",
    ),
    Mutant(
        name="azure-any-resource",
        path="go/internal/provider/azure/azure.go",
        old="\t\tif !keyVaultResources[resource] {\n",
        new="\t\tif false && !keyVaultResources[resource] {\n",
        lang="go",
        why="a hostile Key Vault challenge gets a token for another Azure resource",
    ),
    Mutant(
        name="server-text-keeps-control-characters",
        path="go/internal/redact/redact.go",
        old="\t\tif unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) ||\n",
        new="\t\tif false && unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) ||\n",
        lang="go",
        why="a backend's error text forges log lines or terminal escapes",
    ),
    Mutant(
        name="streamed-body-resent",
        path="python/mlflow_secrets_auth/provider.py",
        old="        if not _hooks.replayable(req):\n",
        new="        if False:\n",
        lang="python",
        why="a 401 to a request with a generator body is re-sent with an empty body",
    ),
    # Issue 14.
    Mutant(
        name="reject-refreshes-any-value",
        path="go/internal/cache/cache.go",
        old="\tif !e.has || !current(e.val) {\n",
        new="\tif !e.has {\n",
        lang="go",
        why="a 401 for an old credential refetches the current one (every stale 401 costs a backend call)",
    ),
    Mutant(
        name="a-budget-per-provider",
        path="go/internal/engine/engine.go",
        old="func (e *Engine) wait(ctx context.Context, s specEntry) (cache.Result[secret.Credential], error) {\n",
        new="func (e *Engine) wait(ctx context.Context, s specEntry) (cache.Result[secret.Credential], error) {\n"
        "\tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)\n\tdefer cancel()\n",
        lang="go",
        why="each provider gets its own deadline, so one call can take one timeout per provider",
    ),
    Mutant(
        name="rejection-falls-back",
        path="go/internal/engine/engine.go",
        old="\t\t\tif msaerr.IsRejection(me) {\n\t\t\t\treturn refused(res, me)\n",
        new="\t\t\tif false && msaerr.IsRejection(me) {\n\t\t\t\treturn refused(res, me)\n",
        lang="go",
        why="a backend's 403 silently switches to the next provider's identity",
    ),
    Mutant(
        name="no-jitter",
        path="go/internal/cache/cache.go",
        old="\treturn ttl/2 + time.Duration(r*float64(ttl/4))\n",
        new="\treturn ttl - ttl/4\n",
        lang="go",
        why="every process with the same TTL refreshes at the same moment",
    ),
    Mutant(
        name="unbounded-cache",
        path="go/internal/cache/cache.go",
        old="\t\tfor c.order.Len() > c.limit {\n",
        new="\t\tfor false && c.order.Len() > c.limit {\n",
        lang="go",
        why="one cache entry per distinct host ever seen, without bound",
    ),
    # Issue 16.
    Mutant(
        name="gcp-crc-skipped",
        path="go/internal/provider/gcp/gcp.go",
        old="\tif err := checkCRC(data, ar.Payload.DataCrc32c); err != nil {\n",
        new="\tif err := checkCRC(data, ar.Payload.DataCrc32c); false && err != nil {\n",
        lang="go",
        why="a corrupted Secret Manager payload becomes a credential",
    ),
    Mutant(
        name="token-file-change-ignored",
        path="go/internal/provider/vault/workload.go",
        old="\treturn w.pending != w.hash, nil\n",
        new="\treturn false, nil\n",
        lang="go",
        why="a rotated Kubernetes/JWT token file is not followed by a new login (a stale identity is kept)",
    ),
    Mutant(
        name="shared-core-takes-a-childs-environment",
        path="go/internal/serve/serve.go",
        old="\t\tcase \"set_env\":\n\t\t\treturn sess.setEnv(eng, req.Env)\n",
        new="\t\tcase \"set_env\":\n\t\t\treturn protocol.SetEnv(eng, req.Env)\n",
        lang="go",
        why="a forked child's set_env replaces the settings its parent's core serves (MsaShare)",
    ),
    Mutant(
        name="fetch-not-counted",
        path="go/internal/engine/engine.go",
        old="\t\te.note(name, key, nil)\n\t\te.fetched.Add(1)\n",
        new="\t\te.note(name, key, nil)\n",
        lang="go",
        why="the pages a fetch or refresh faults in stay resident (only the start-up's are released)",
    ),
    Mutant(
        name="goroutine-per-request",
        path="go/internal/serve/serve.go",
        old="\t\t\tcase work <- line:\n\t\t\tdefault:\n\t\t\t\tgo worker(line)\n",
        new="\t\t\tdefault:\n\t\t\t\tgo one(line)\n",
        lang="go",
        why="each helper request's goroutine exits and maps the function table back in after the release",
    ),
    Mutant(
        name="no-release-between-fetches",
        path="go/internal/engine/engine.go",
        old="\treturn last != 0 && now-last >= int64(ReleaseEvery) && e.released.CompareAndSwap(last, now)\n",
        new="\treturn false && last != 0 && now-last >= int64(ReleaseEvery) && e.released.CompareAndSwap(last, now)\n",
        lang="go",
        why="what the runtime maps back between fetches stays resident until the next fetch",
    ),
    Mutant(
        name="release-not-applied",
        path="python/mlflow_secrets_auth/_native.py",
        old="        if release and self._madvise is not None:\n",
        new="        if release and self._madvise is None:\n",
        lang="python",
        why="the plugin takes on the release of the library's pages (MsaReleaseByCaller) and never makes it",
    ),
    Mutant(
        name="preload-not-recorded",
        path="python/mlflow_secrets_auth/_native.py",
        old="        _preloaded, _runtime_pid = (pid, lib), pid\n",
        new="        _preloaded = (pid, lib)\n",
        lang="python",
        why="a child forked after the preload (runtime loaded, not yet used) calls the inherited runtime: a hang",
    ),
    Mutant(
        name="segments-with-writable",
        path="go/internal/trim/segments_cgo_linux.go",
        old="if (p[i].p_type != PT_LOAD || (p[i].p_flags & PF_W) || p[i].p_filesz == 0) continue;",
        new="if (p[i].p_type != PT_LOAD || p[i].p_filesz == 0) continue;",
        lang="go",
        why="the release names the writable segment; only the pagemap check keeps its written pages",
    ),
    Mutant(
        name="warm-skips-vault",
        path="go/internal/serve/warm.go",
        old="\treturn vault.Warm()\n",
        new="\t_ = vault.Warm\n\treturn nil\n",
        lang="go",
        why="the warm-up leaves Vault's response decoders to the first fetch, which pays for them again",
    ),
)
