/* Test-only stand-in for Windows' bcryptprimitives.dll, which Debian's wine 8.0
 * lacks: Go (1.24+) on Windows takes its random bytes from ProcessPrng there
 * and stops at start-up without it. Installed only into the throw-away wine
 * prefix of tests/test_wheels.py; never shipped. Real Windows 10+ has the DLL.
 * ProcessPrng forwards to BCryptGenRandom (the system-preferred RNG). */
#include <windows.h>

typedef LONG(WINAPI *gen_random_fn)(void *, unsigned char *, ULONG, ULONG);
#define SYSTEM_PREFERRED_RNG 0x00000002

__declspec(dllexport) BOOL WINAPI ProcessPrng(unsigned char *data, SIZE_T size) {
    static gen_random_fn gen = NULL;
    if (gen == NULL) {
        HMODULE bcrypt = LoadLibraryA("bcrypt.dll");
        if (bcrypt == NULL) return FALSE;
        gen = (gen_random_fn)GetProcAddress(bcrypt, "BCryptGenRandom");
        if (gen == NULL) return FALSE;
    }
    while (size > 0) {
        ULONG chunk = size > 0x40000000 ? 0x40000000 : (ULONG)size;
        if (gen(NULL, data, chunk, SYSTEM_PREFERRED_RNG) != 0) return FALSE;
        data += chunk;
        size -= chunk;
    }
    return TRUE;
}
