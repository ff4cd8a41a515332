"""The cluster backend: a head running the core, nodes running process backends, drivers.

``driver`` is the driver's side (its client of the head's core), ``sessions`` where
``actorlib start`` keeps its sessions and how a driver finds a cluster, ``daemons`` starts
and stops head and node processes (and a driver's private cluster). ``head`` is the core's
server (``head_peer`` one connection to it, ``head_status`` the report ``actorlib status``
shows, ``head_daemon`` the head's process), ``node`` a machine's daemon, ``objects`` moves
large objects between nodes.
"""
