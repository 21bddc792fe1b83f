/* Calls the library through include/mlflow_secrets_auth.h the way a C caller
 * would, and prints each reply on its own line for tests/test_c_api.py. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "mlflow_secrets_auth.h"

static void show(const char *label, char *reply) {
    if (reply == NULL) {
        printf("%s NULL\n", label);
        return;
    }
    printf("%s %s\n", label, reply);
    MsaFree(reply);
}

/* Drops the ranges a reply's "release" member names, as the header says a
 * caller in MsaReleaseByCaller mode does once the reply is freed; returns how
 * many madvise accepted, -1 when the reply has none. */
static int release_named(const char *reply) {
    const char *p = strstr(reply, "\"release\":[");
    if (p == NULL) return -1;
    p += strlen("\"release\":[");
    unsigned long long start[16], length[16];
    int n = 0, used = 0;
    while (n < 16 && sscanf(p, "[%llu,%llu]%n", &start[n], &length[n], &used) == 2) {
        n++;
        p += used;
        if (*p == ',') p++;
    }
    int ok = 0;
#ifdef __linux__
    for (int i = 0; i < n; i++)
        if (madvise((void *)(uintptr_t)start[i], (size_t)length[i], MADV_DONTNEED) == 0) ok++;
#endif
    return ok;
}

int main(int argc, char **argv) {
    if (MsaAbiVersion() != MSA_ABI_VERSION) {
        printf("abi-mismatch %d\n", MsaAbiVersion());
        return 2;
    }
    printf("abi %d\n", MsaAbiVersion());
    show("process-env", GetAuthHeaders(argc > 1 ? argv[1] : "localhost"));
    {
        char req[1024];
        snprintf(req, sizeof req, "{\"target\":\"%s\",\"proxy\":\"\",\"reject\":\"\",\"deadline_ms\":5000}",
                 argc > 1 ? argv[1] : "localhost");
        show("msa-headers", MsaHeaders(req));
        snprintf(req, sizeof req, "{\"target\":\"%s\",\"proxy\":\"http://proxy.corp:3128\"}", argc > 1 ? argv[1] : "localhost");
        show("msa-headers-proxy", MsaHeaders(req));
        snprintf(req, sizeof req, "{\"target\":\"%s\",\"proxy\":\"ftp://proxy.corp\"}", argc > 1 ? argv[1] : "localhost");
        show("msa-headers-badproxy", MsaHeaders(req));
    }
    show("msa-headers-bad", MsaHeaders("[1, 2"));
    show("msa-headers-null", MsaHeaders(NULL));
    show("set-bad", MsaSetEnv("[1, 2"));
    show("set", MsaSetEnv("{\"MLFLOW_SECRETS_AUTH_ENABLE\":\"vault\",\"MLFLOW_TRACKING_URI\":\"https://h:1\"}"));
    show("unconfigured", GetAuthHeaders("https://h:1"));
    show("null-host", GetAuthHeaders(NULL));
    show("info", MsaInfo());
    show("doctor", MsaDoctor(NULL));
    MsaInvalidate();
    show("reset", MsaSetEnv(NULL));
    show("after-reset", GetAuthHeaders(argc > 1 ? argv[1] : "localhost"));
    /* The caller releases the library's pages after a fetch. */
    printf("caller-releases %d\n", MsaReleaseByCaller(1));
    MsaInvalidate();
    char *fetched = GetAuthHeaders(argc > 1 ? argv[1] : "localhost");
    char copy[8192];
    snprintf(copy, sizeof copy, "%s", fetched ? fetched : "null");
    show("fetched", fetched);
    printf("released %d\n", release_named(copy));
    show("after-release", GetAuthHeaders(argc > 1 ? argv[1] : "localhost"));
    printf("library-releases %d\n", MsaReleaseByCaller(0));
    MsaFree(NULL);
    return 0;
}
