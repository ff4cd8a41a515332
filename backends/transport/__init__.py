"""What travels between processes: framing and flat encoding (``wire``, ``codec``), the
authenticated handshake (``auth``), the core's side of a remote client (``client_link``) and
events sent to a core in another process (``forwarding``).
"""
