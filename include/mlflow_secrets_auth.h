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
 * not_configured, host_not_allowed, backend, secret_unusable, internal),
 * "message" (never contains a secret) and, where one is to blame, "variable"
 * (the environment variable to change). No function panics, aborts, or writes
 * to stdout/stderr.
 *
 * Threads: every function may be called from any thread at the same time.
 * Fork: a process that forks after loading the library must not call it from
 * the child (the Go runtime does not survive fork); exec a new process.
 */
#ifndef MLFLOW_SECRETS_AUTH_H
#define MLFLOW_SECRETS_AUTH_H

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes; compare with MsaAbiVersion(). */
#define MSA_ABI_VERSION 1

/* cffi-cdef-begin: the declarations below are also read by the Python binding. */

/*
 * Headers to attach to a request for `host`: "host", "host:port", "[v6]:port"
 * or a URL ("https://host:8443/path", whose scheme gives the default port).
 * Success: {"ok":true,"headers":{"Authorization":"Bearer ..."},
 *           "provider":"vault","max_age_ms":299000}
 *   max_age_ms: how long the caller may reuse these headers for this host.
 *   "stale": {...} is present when a refresh failed and the last good value is
 *   served; "attempts": [...] lists earlier providers that failed;
 *   "events": [{"level":"warning"|"info","message":"..."}] are one-shot
 *   messages (an outage began, a provider recovered, a settings warning), each
 *   returned once, by whichever call comes first: log them as they arrive.
 * Failure: {"ok":false,"code":"...","message":"...","variable":"...",
 *           "attempts":[{"provider":"vault","code":"...","message":"..."}]}
 */
char *GetAuthHeaders(const char *host);

/*
 * Replace the environment the library reads with `env_json`, a JSON object
 * mapping names to string values; NULL returns to the process environment.
 * Takes effect on the next call. Providers and cached credentials whose
 * settings are unchanged are kept. The AWS_*, AZURE_*, IDENTITY_*, MSI_* and
 * IMDS_* variables are also copied into the process environment, where the
 * cloud SDKs read them. Reply: {"ok":true} or an error.
 */
char *MsaSetEnv(const char *env_json);

/* The effective configuration: version, providers and their non-secret
 * settings (or why they are unusable), allowed hosts, header name. */
char *MsaInfo(void);

/* Diagnose: configuration, then each enabled provider (settings, fetch,
 * header, reported redacted), and the host policy for `url` unless NULL/"".
 * Reply: {"ok":bool,"checks":[{"name":...,"ok":bool,"detail":...,"error":{...}}]} */
char *MsaDoctor(const char *url);

/* Forget cached credentials; the next call fetches them again. */
void MsaInvalidate(void);

/* The ABI version of the loaded library (MSA_ABI_VERSION when they match). */
int MsaAbiVersion(void);

/* Release a string returned by this library. NULL is ignored. */
void MsaFree(char *p);

/* cffi-cdef-end */

#ifdef __cplusplus
}
#endif

#endif /* MLFLOW_SECRETS_AUTH_H */
