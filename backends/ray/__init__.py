"""The ``ray`` backend: actorlib's API on a Ray cluster.

Ray schedules, stores the objects and moves the data; actorlib keeps its API, typed
handles, async bridge and Executor/pools on top. ``connector`` starts or joins Ray,
``client`` maps actorlib's specs and refs onto Ray's (``waits``: waiting for Ray's
objects; ``limits``: the Executor's bound, kept in the submitting process), ``boxes``
carries actorlib values through Ray's object store, ``errors`` turns Ray's exceptions
into actorlib's, and ``worker`` is what runs inside Ray's worker processes.
"""
