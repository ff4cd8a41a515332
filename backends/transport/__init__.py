"""What travels between processes: framing and flat encoding (``wire``, ``codec``), the
authenticated handshake (``auth`` runs it over streams and sockets, ``handshake`` is the
protocol itself, ``tokens`` the shared secret, ``tls`` the TLS configuration), the core's
side of a remote client (``client_link``) and events sent to a core in another process
(``forwarding``).
"""
