"""The local runner: what runs tasks and actors on threads of one process.

The thread backend is a local runner made a ``Backend``; every process worker (and so
every worker of a cluster's nodes) runs one, fed by the messages the driver sends.
``local_runner`` takes the work, cancels and recalls, ``task_thread`` is one thread of its
task pool, ``actor_host`` one actor, ``user_code`` the steps around running the user's
code (load it, unpack the arguments, pack the results or the error).
"""
