"""What travels between processes: framing and flat encoding (``framing`` the frames and a
worker's blocking end, ``wire`` the asyncio end, ``codec``), the authenticated handshake
(``auth`` runs it over streams and sockets, ``handshake`` is the protocol itself,
``release`` the identity its peers must share, ``tokens`` the shared secret, ``tls`` the
TLS configuration), the API forwarded to a core in another process (``remote_core``) and
the core's side of that client (``client_link``), and events sent to a core in another
process (``forwarding``).
"""
