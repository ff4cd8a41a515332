"""The release, where every layer reads it: the API's ``__version__`` and the cluster's
handshake (whose peers must run the same one)."""

RELEASE = "0.1.0"
