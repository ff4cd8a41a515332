"""The cluster backend: a head running the core, nodes running process backends, drivers.

``driver`` is the driver's side (and starts private clusters and daemons), ``head`` the core's
server, ``node`` a machine's daemon, ``objects`` moves large objects between nodes.
"""
