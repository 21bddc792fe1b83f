/* msa-helper, the native launcher: the helper process of every wheel that
 * carries the Go library (manylinux, macOS, Windows). It loads that library
 * in this fresh process and hands it stdin and stdout through MsaServe(), so
 * the helper protocol is served by the same Go code as in-process calls,
 * and a wheel carries one Go binary instead of two. (musllinux wheels, where
 * a Go shared library cannot be loaded, ship the static Go msa-helper
 * instead.) Built with zig cc for every target; build.sh builds it with the
 * system C compiler for the local wheel.
 *
 *   msa-helper [--library PATH]
 *
 * The library: PATH if given, else the platform's library file next to this
 * executable (the wheel's own). MLFLOW_SECRETS_AUTH_LIBRARY is deliberately
 * not read: the Python layer falls back to this helper when the library it
 * names cannot be loaded in-process, and the helper must then still work.
 *
 * Exit status: 0 when stdin ended and every reply was written; otherwise one
 * line on stderr, starting "msa-helper: ", and
 *   2  a usage error (an unknown argument),
 *   3  the library cannot be loaded (missing, wrong architecture, ...),
 *   4  the library has no MsaAbiVersion or MsaServe (not this project's, or
 *      older than ABI 2),
 *   5  the library is of another ABI version than this launcher,
 *   6  MsaServe failed (stdin or stdout not open, or an internal error),
 *   7  this executable's own path cannot be found (to find the library).
 * It writes nothing else: stdout carries the protocol only. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlflow_secrets_auth.h" /* MSA_ABI_VERSION: the one definition */

#define EXIT_USAGE 2
#define EXIT_LOAD 3
#define EXIT_SYMBOL 4
#define EXIT_ABI 5
#define EXIT_SERVE 6
#define EXIT_SELF 7

typedef int (*abi_fn)(void);
typedef int (*serve_fn)(int, int);

/* One line on stderr, "msa-helper: " and the message, with line breaks
 * (as in a system error text) folded into spaces; returns code. */
static int fail(int code, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '.')) buf[--n] = 0;
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "msa-helper: %s\n", buf);
    fflush(stderr);
    return code;
}

#define USAGE "usage: msa-helper [--library PATH]"
#define NO_SYMBOLS "the library %s has no MsaAbiVersion or MsaServe: not an mlflow-secrets-auth library of ABI 2 or later"
#define OTHER_ABI "the library %s is of ABI version %d; this msa-helper needs %d"
#define SERVE_FAILED "cannot serve on stdin/stdout: MsaServe returned %d"

#ifdef _WIN32
#include <windows.h>

#define LIBRARY_FILE L"mlflow_secrets_auth.dll"

static void utf8(const wchar_t *w, char *out, int size) {
    if (!WideCharToMultiByte(CP_UTF8, 0, w, -1, out, size, NULL, NULL)) snprintf(out, size, "(unprintable path)");
}

static void last_error(char *out, DWORD size) {
    DWORD err = GetLastError();
    int n = snprintf(out, size, "error %lu ", (unsigned long)err);
    if (n < 0 || (DWORD)n >= size) return;
    if (!FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, err, 0, out + n, size - n, NULL))
        out[n] = 0;
}

int wmain(int argc, wchar_t **argv) {
    static wchar_t path[32768];
    char shown[4096], reason[1024];
    /* No "DLL not found" dialog box: the failure is reported on stderr. */
    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOOPENFILEERRORBOX);
    if (argc == 3 && wcscmp(argv[1], L"--library") == 0 && argv[2][0]) {
        wcsncpy(path, argv[2], 32767);
    } else if (argc != 1) {
        return fail(EXIT_USAGE, USAGE);
    } else {
        DWORD n = GetModuleFileNameW(NULL, path, 32768);
        wchar_t *slash = wcsrchr(path, L'\\');
        if (n == 0 || n >= 32768 || slash == NULL || (size_t)(slash + 1 - path) + wcslen(LIBRARY_FILE) >= 32768) {
            last_error(reason, sizeof reason);
            return fail(EXIT_SELF, "cannot find its own path to locate the library: %s", reason);
        }
        wcscpy(slash + 1, LIBRARY_FILE);
    }
    utf8(path, shown, sizeof shown);
    HMODULE lib = LoadLibraryExW(path, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    if (lib == NULL) {
        last_error(reason, sizeof reason);
        return fail(EXIT_LOAD, "cannot load the library %s: %s", shown, reason);
    }
    abi_fn abi = (abi_fn)(void (*)(void))GetProcAddress(lib, "MsaAbiVersion");
    serve_fn serve = (serve_fn)(void (*)(void))GetProcAddress(lib, "MsaServe");
    if (abi == NULL || serve == NULL) {
        return fail(EXIT_SYMBOL, NO_SYMBOLS, shown);
    }
    int version = abi();
    if (version != MSA_ABI_VERSION) {
        return fail(EXIT_ABI, OTHER_ABI, shown, version, MSA_ABI_VERSION);
    }
    /* Win32 handles fit in 32 bits (see MsaServe in mlflow_secrets_auth.h). */
    int in = (int)(INT_PTR)GetStdHandle(STD_INPUT_HANDLE);
    int out = (int)(INT_PTR)GetStdHandle(STD_OUTPUT_HANDLE);
    int rc = serve(in, out);
    if (rc != 0) return fail(EXIT_SERVE, SERVE_FAILED, rc);
    return 0;
}

#else /* POSIX */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>
#ifdef __APPLE__
#include <mach-o/dyld.h>
#define LIBRARY_FILE "libmlflow_secrets_auth.dylib"
#else
#define LIBRARY_FILE "libmlflow_secrets_auth.so"
#endif

/* This executable's own path, resolved (symlinks followed). */
static int self_path(char *out, size_t size) {
#ifdef __APPLE__
    char raw[PATH_MAX * 2];
    uint32_t len = sizeof raw;
    if (_NSGetExecutablePath(raw, &len) != 0) return -1;
    char resolved[PATH_MAX];
    if (realpath(raw, resolved) == NULL) return -1;
    if (strlen(resolved) >= size) return -1;
    strcpy(out, resolved);
    return 0;
#else
    ssize_t n = readlink("/proc/self/exe", out, size - 1);
    if (n <= 0 || (size_t)n >= size - 1) return -1;
    out[n] = 0;
    return 0;
#endif
}

int main(int argc, char **argv) {
    char path[PATH_MAX + 64];
    /* A closed stdin or stdout would be reused by the next open (the
     * library's own files): refuse before loading anything. */
    if (fcntl(0, F_GETFD) == -1 || fcntl(1, F_GETFD) == -1)
        return fail(EXIT_SERVE, "cannot serve on stdin/stdout: %s is not open", fcntl(0, F_GETFD) == -1 ? "stdin" : "stdout");
    if (argc == 3 && strcmp(argv[1], "--library") == 0 && argv[2][0]) {
        /* A name without a slash would make dlopen search the library path. */
        snprintf(path, sizeof path, "%s%s", strchr(argv[2], '/') ? "" : "./", argv[2]);
    } else if (argc != 1) {
        return fail(EXIT_USAGE, USAGE);
    } else {
        if (self_path(path, sizeof path - sizeof LIBRARY_FILE) != 0 || strrchr(path, '/') == NULL)
            return fail(EXIT_SELF, "cannot find its own path to locate the library");
        strcpy(strrchr(path, '/') + 1, LIBRARY_FILE);
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        const char *why = dlerror();
        /* dlerror usually starts with the path again: keep only its reason. */
        size_t plen = strlen(path);
        if (why && strncmp(why, path, plen) == 0 && why[plen] == ':') why += plen + 1;
        while (why && *why == ' ') why++;
        return fail(EXIT_LOAD, "cannot load the library %s: %s", path, why ? why : "unknown error");
    }
    abi_fn abi = (abi_fn)dlsym(lib, "MsaAbiVersion");
    serve_fn serve = (serve_fn)dlsym(lib, "MsaServe");
    if (abi == NULL || serve == NULL) {
        return fail(EXIT_SYMBOL, NO_SYMBOLS, path);
    }
    int version = abi();
    if (version != MSA_ABI_VERSION) {
        return fail(EXIT_ABI, OTHER_ABI, path, version, MSA_ABI_VERSION);
    }
    int rc = serve(0, 1);
    if (rc != 0) return fail(EXIT_SERVE, SERVE_FAILED, rc);
    return 0;
}
#endif
