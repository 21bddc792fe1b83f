/* Calls the library through include/mlflow_secrets_auth.h the way a C caller
 * would, and prints each reply on its own line for tests/test_c_api.py. */
#include <stdio.h>
#include <string.h>

#include "mlflow_secrets_auth.h"

static void show(const char *label, char *reply) {
    if (reply == NULL) {
        printf("%s NULL\n", label);
        return;
    }
    printf("%s %s\n", label, reply);
    MsaFree(reply);
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
    MsaFree(NULL);
    return 0;
}
