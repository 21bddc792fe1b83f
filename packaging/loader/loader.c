/* Loads libmlflow_secrets_auth with dlopen the way cffi does, checks the ABI
 * version and prints one reply per argument host, for tests/test_wheels.py
 * (cross-compiled with zig; run under qemu-user for aarch64, under wine for
 * Windows).
 *
 *   loader <library> <host>...
 *
 * Output: "abi <n>" then "reply <json>" per host. Exit 2 on a load failure,
 * 3 on an ABI mismatch, 4 on a NULL reply. */
#include <stdio.h>
#ifdef _WIN32
#include <windows.h>
#define OPEN(path) ((void *)LoadLibraryA(path))
#define SYM(lib, name) ((void *)GetProcAddress((HMODULE)(lib), name))
#define LAST_ERROR() "LoadLibrary/GetProcAddress failed"
#else
#include <dlfcn.h>
#define OPEN(path) dlopen(path, RTLD_NOW | RTLD_LOCAL)
#define SYM(lib, name) dlsym(lib, name)
#define LAST_ERROR() dlerror()
#endif

#include "mlflow_secrets_auth.h" /* MSA_ABI_VERSION */

typedef int (*abi_fn)(void);
typedef char *(*headers_fn)(const char *);
typedef void (*free_fn)(char *);

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: loader <library> <host>...\n");
        return 1;
    }
    void *lib = OPEN(argv[1]);
    if (lib == NULL) {
        printf("load-failed %s\n", LAST_ERROR());
        return 2;
    }
    abi_fn abi = (abi_fn)SYM(lib, "MsaAbiVersion");
    headers_fn headers = (headers_fn)SYM(lib, "GetAuthHeaders");
    free_fn release = (free_fn)SYM(lib, "MsaFree");
    if (abi == NULL || headers == NULL || release == NULL) {
        printf("symbol-missing %s\n", LAST_ERROR());
        return 2;
    }
    int version = abi();
    printf("abi %d\n", version);
    if (version != MSA_ABI_VERSION) return 3;
    for (int i = 2; i < argc; i++) {
        char *reply = headers(argv[i]);
        if (reply == NULL) {
            printf("reply NULL\n");
            return 4;
        }
        printf("reply %s\n", reply);
        release(reply);
    }
    fflush(stdout);
    return 0;
}
