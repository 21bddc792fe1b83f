"""Generate mlflow_secrets_auth/_ffi.py: an out-of-line ABI-mode cffi module.

The declarations come from include/mlflow_secrets_auth.h (between the
cffi-cdef markers), so the C header stays the single source of truth. The
generated module parses nothing at import time. Run by build.sh.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import cffi

ROOT = Path(__file__).resolve().parent.parent


# Functions the binding calls (ABI version 2) that a header from before that
# version lacks; each is added only where the header does not declare it, so
# the header stays the source whenever it has the declaration.
ABI2_FUNCTIONS = {"MsaHeaders": "char *MsaHeaders(const char *request_json);"}


# From the C library (ffi.dlopen(None)), not ours: the plugin drops the pages
# MsaReleaseByCaller names itself.
LIBC = "int madvise(void *addr, size_t length, int advice);\n"


def cdef_from_header(header: Path) -> str:
    text = header.read_text()
    match = re.search(r"cffi-cdef-begin.*?\*/(.*?)/\*\s*cffi-cdef-end", text, re.S)
    if not match:
        raise SystemExit(f"{header}: cffi-cdef markers not found")
    cdef = re.sub(r"/\*.*?\*/", "", match.group(1), flags=re.S)
    for name, declaration in ABI2_FUNCTIONS.items():
        if not re.search(rf"\b{name}\s*\(", cdef):
            cdef += declaration + "\n"
    return cdef + LIBC


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "python" / "mlflow_secrets_auth"
    ffibuilder = cffi.FFI()
    ffibuilder.cdef(cdef_from_header(ROOT / "include" / "mlflow_secrets_auth.h"))
    ffibuilder.set_source("mlflow_secrets_auth._ffi", None)
    ffibuilder.emit_python_code(str(out_dir / "_ffi.py"))


if __name__ == "__main__":
    main()
