"""MLflow request-auth plugin: credentials from secret managers, per request.

Importing this package loads nothing: the native library is loaded on the
first request that needs headers.
"""

__version__ = "0.3.0"

__all__ = ["__version__"]
