/*
 * mlflow_secrets_auth.h - C API of libmlflow_secrets_auth.so
 *
 * The library turns a secret held in HashiCorp Vault (and, later, AWS Secrets
 * Manager or Azure Key Vault) into the HTTP headers to send to an MLflow
 * server. It is configured by environment variables (see README.md).
 *
 * Ownership: every function returning `char *` returns a NUL-terminated UTF-8
 * JSON document allocated by the library. The caller owns it and must release
 * it with MsaFree() exactly once. Strings passed in are only read during the
 * call; the caller keeps ownership.
 *
 * Errors: replies carry "ok": false with "code" (one of not_enabled,
 * not_configured, host_not_allowed, backend, secret_unusable, internal; and
 * not_shared, only on a connection served by MsaShare),
 * "message" (never contains a secret) and, where one is to blame, "variable"
 * (the environment variable to change). No function panics, aborts, or writes
 * to stdout/stderr.
 *
 * Threads: every function may be called from any thread at the same time.
 * Fork: a process that forks after loading the library must not call it from
 * the child (the Go runtime does not survive fork); exec a new process, or
 * let the child ask the parent through MsaShare.
 */
#ifndef MLFLOW_SECRETS_AUTH_H
#define MLFLOW_SECRETS_AUTH_H

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes; compare with MsaAbiVersion(). */
#define MSA_ABI_VERSION 2

/* cffi-cdef-begin: the declarations below are also read by the Python binding. */

/*
 * Headers to attach to a request for `host`: "host", "host:port", "[v6]:port"
 * or a URL ("https://host:8443/path", whose scheme gives the default port).
 * The same as MsaHeaders with only "target".
 * Success: {"ok":true,"headers":{"Authorization":"Bearer ..."},
 *           "fingerprint":"<64 hex>","provider":"vault","max_age_ms":299000}
 *   fingerprint: identifies exactly this header set (hex SHA-256 over the
 *   headers sorted by lower-cased name, each as lower-cased name, NUL, value,
 *   NUL); give it back as "reject" when a server answers 401 to them.
 *   max_age_ms: how long the caller may reuse these headers for this host;
 *   at most 60000, so that a caller that keeps working calls at least once a
 *   minute, and that call releases the library's pages the Go runtime's
 *   background work brought back (see MsaReleaseByCaller).
 *   "stale": {...} is present when a refresh failed and the last good value is
 *   served; "attempts": [...] lists earlier providers that failed;
 *   "events": [{"level":"warning"|"info","message":"..."}] are one-shot
 *   messages (an outage began, a provider recovered, a settings warning), each
 *   returned once, by whichever call comes first: log them as they arrive.
 * Failure: {"ok":false,"code":"...","message":"...","variable":"...",
 *           "attempts":[{"provider":"vault","code":"...","message":"..."}]}
 * After MsaReleaseByCaller(1), a reply that follows a fetch also carries
 * "release": [[start, length], ...] (see there).
 */
char *GetAuthHeaders(const char *host);

/*
 * Headers for one request, asked as JSON:
 *   {"target": "scheme://host:port" (or host, host:port, a URL),
 *    "proxy": "<the proxy URL the request goes through for this hop, or "">",
 *    "reject": "<the fingerprint of headers a server answered 401 to, or "">",
 *    "deadline_ms": <the caller's budget for this call; optional>}
 * Reply: as GetAuthHeaders.
 *   Servers: with MLFLOW_SECRETS_SERVERS, the settings of the first entry
 *   whose pattern matches the target's host and port (whatever the scheme)
 *   are used, under that entry's host policy; errors then start with
 *   `server "<pattern>" (MLFLOW_SECRETS_SERVERS): `. Other targets use the
 *   top-level settings and host policy.
 *   Time: one call has one budget, min(MLFLOW_SECRETS_TIMEOUT_SEC,
 *   deadline_ms), shared by the providers in the order they are tried.
 *   proxy: for an http:// target (or a bare host) the credential is cleartext
 *   on the hop to a proxy that is neither https:// nor loopback: refused
 *   (code host_not_allowed, variable MLFLOW_SECRETS_ALLOW_HTTP) unless
 *   MLFLOW_SECRETS_ALLOW_HTTP=true. An https:// target through any proxy is
 *   a CONNECT tunnel: allowed. A proxy that does not parse is refused.
 *   reject: only the provider whose current value has that fingerprint is
 *   refreshed, once however many callers reject it, and only if that value
 *   is still current (a value already replaced is simply returned); the
 *   call waits for that refresh within its budget. If the refresh fails the
 *   old value is still served (the fingerprint is unchanged: do not re-send).
 *   Failure classes: the next provider is tried only when one is unavailable
 *   (not configured, unreachable, timed out, 5xx). A rejection (the backend
 *   answered 401/403/404, an unusable or expired secret) is the reply at
 *   once, naming the provider, and ends the serving of its last value.
 */
char *MsaHeaders(const char *request_json);

/*
 * Replace the environment the library reads with `env_json`, a JSON object
 * mapping names to string values; NULL returns to the process environment.
 * Takes effect on the next call. Providers and cached credentials whose
 * settings are unchanged are kept. The library never writes the process
 * environment. The AWS and Azure SDKs, however, read their own variables
 * (AWS_*; AZURE_*, IDENTITY_*, MSI_*, IMDS_*) from the process environment as
 * it was when the library loaded; AWS_REGION, AWS_DEFAULT_REGION and
 * AZURE_KEY_VAULT_URL are passed to them explicitly when set. A provider
 * whose SDK would read another value than the one in env_json refuses with
 * an error naming the variables (code "not_configured"): set them before the
 * process starts, or serve that environment from a process started with it
 * (the Python plugin starts its helper so).
 * Reply: {"ok":true,"timeout_ms":10000,"log_level":"INFO","warnings":["..."],
 *         "process_env":["AWS_PROFILE"]}
 *   timeout_ms: the per-call budget (MLFLOW_SECRETS_TIMEOUT_SEC);
 *   log_level: DEBUG, INFO, WARNING, ERROR or CRITICAL
 *   (MLFLOW_SECRETS_LOG_LEVEL); warnings: every configuration and provider
 *   warning, one line each, without secrets; process_env: the variables
 *   (names only, sorted) that refused a provider as above, [] when none.
 *   Or an error.
 */
char *MsaSetEnv(const char *env_json);

/* The effective configuration: version, abi, providers and their non-secret
 * settings (or why they are unusable; "refresh_at" and "expires_at", RFC
 * 3339, when a credential is held and the time is known), allowed hosts,
 * header name, "log_level", "timeout_ms" and "warnings" (as MsaSetEnv).
 * "servers": the entries of MLFLOW_SECRETS_SERVERS in their order (the first
 * whose pattern matches a host serves it; the top-level settings serve the
 * hosts none matches), always present ([] without any):
 *   [{"pattern":"mlflow-staging.corp.com",
 *     "variables":["MLFLOW_VAULT_SECRET_PATH"],   (the names it sets, never values)
 *     "providers":[...as above...],
 *     "header_name":"Authorization",              (the header set for its hosts)
 *     "allowed_hosts":["..."],                    (only when it sets its own
 *                                                  MLFLOW_SECRETS_ALLOWED_HOSTS)
 *     "allow_http":false,
 *     "error":{...}}]                             (its settings are unusable)
 * An unusable MLFLOW_SECRETS_SERVERS is the reply's own error (no host is
 * served then). */
char *MsaInfo(void);

/* Diagnose: configuration, then each enabled provider (settings, fetch,
 * header, reported redacted), the same for each MLFLOW_SECRETS_SERVERS entry
 * (check names start with "server <pattern>: " and carry "server":
 * "<pattern>"), and the host policy for `url` unless NULL/"" (its detail
 * names the settings that serve it: a server, or the top-level ones).
 * Reply: {"ok":bool,"checks":[{"name":...,"server":...,"ok":bool,"detail":...,"error":{...}}],
 *         "warnings":["..."]} */
char *MsaDoctor(const char *url);

/* Forget every cached credential (an explicit reset); the next call fetches
 * again. A 401 from a server is not a reason to call this: pass its
 * fingerprint as MsaHeaders' "reject" instead. */
void MsaInvalidate(void);

/* The ABI version of the loaded library (MSA_ABI_VERSION when they match). */
int MsaAbiVersion(void);

/* Release a string returned by this library. NULL is ignored. */
void MsaFree(char *p);

/* Share this process's core with a child it forks (POSIX). A Go runtime does
 * not survive fork, so a forked child must never call the library it
 * inherited; with this, it asks its parent instead of starting a helper
 * process of its own, and the whole family has one cache, one login and one
 * refresh schedule. Create a socket pair (socketpair(AF_UNIX, SOCK_STREAM))
 * before fork(); after fork(), the parent passes its end here and closes both
 * ends (the library serves its own duplicate, through its poller, until the
 * child's end closes; passed before the fork, a copy would stay open in the
 * child, which would then not see the connection close when the parent
 * exits). The child closes the parent's end and speaks the helper protocol
 * (go/internal/serve) on its own; tests/c/share.c does all of this.
 * The child may use the core, not change it: its set_env is accepted only
 * with the environment this process handed the library last (MsaSetEnv; the
 * same names and values; the process environment when MsaSetEnv was never
 * called or called with NULL), and every other call except ping and abi is
 * refused with {"ok":false,"code":"not_shared",...} until it has, or once
 * this process has handed another environment since; a refused child starts
 * a helper of its own.
 * Returns 0 when the connection is served, -1 when fd is not an open socket
 * (or on Windows, which has no fork), -2 on an internal error. New after ABI
 * 2 without an ABI change: a caller that may load an older library looks the
 * symbol up (the Python plugin shares only when it is there). */
int MsaShare(int fd);

/* Memory (Linux). Loading the library and a fetch leave most of its code and
 * read-only data resident, mapped a page-cache folio (up to 1 MB) at a time,
 * though cached requests use little of it. So after each fetch that succeeded,
 * and at the first call a minute or more after the last release, the library
 * drops its read-only file pages from the process's resident set (madvise
 * MADV_DONTNEED; they stay in the page cache, shared, and come back on use),
 * once the reply is built. The code that runs after that, on the
 * way back to the caller, maps some of them back. With on != 0 the library
 * leaves the release to the caller: the reply of GetAuthHeaders or
 * MsaHeaders that follows a fetch (or the first call a minute or more after
 * the last release) carries "release": [[start, length], ...],
 * the ranges to drop, checked at that moment to hold no private page; drop
 * each with madvise((void *)start, length, MADV_DONTNEED) after MsaFree of
 * that reply, before calling into the library again (the Python plugin
 * does). on == 0 returns to the library's own release. Returns 1 where pages
 * are released at all (Linux), 0 elsewhere. New after ABI 2 without an ABI
 * change: look the symbol up where an older library may be loaded. */
int MsaReleaseByCaller(int on);

/* cffi-cdef-end */

/*
 * Serve the helper protocol (one JSON request per line in, one reply per line
 * out, described in go/internal/serve) on two open descriptors until the
 * input ends, then answer every request read and return. This is what the
 * wheel's `msa-helper` launcher (packaging/launcher/launcher.c) calls in a
 * fresh process of its own: a process that forked after loading the library
 * talks to that process instead of its inherited runtime. Call it only in a
 * process that exists for this: it also turns off core dumps for the whole
 * process (RLIMIT_CORE 0, and PR_SET_DUMPABLE 0 on Linux), since the process
 * then holds credentials.
 *
 * POSIX: in_fd and out_fd are file descriptors (the launcher passes 0 and 1).
 * Windows: they are Win32 HANDLE values passed as int (64-bit Windows keeps
 * handles to their lower 32 bits, so truncation is lossless); the launcher
 * passes GetStdHandle(STD_INPUT_HANDLE) and GetStdHandle(STD_OUTPUT_HANDLE).
 * The library serves duplicates and closes those; the caller's descriptors
 * stay open. Nothing else is written to out_fd, and nothing to stderr.
 *
 * Returns 0 when the input ended and every reply was written (or the output
 * was gone), -1 when a descriptor is not open (nothing read), -2 on an
 * internal error. Added in ABI 2.
 */
int MsaServe(int in_fd, int out_fd);

#ifdef __cplusplus
}
#endif

#endif /* MLFLOW_SECRETS_AUTH_H */
