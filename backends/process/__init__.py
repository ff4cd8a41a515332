"""The process backend: worker processes on this machine, a shared-memory object store.

``backend`` drives the workers from the core's side (``worker_process`` is its view of one
worker: starting it, talking to it, seeing it die), ``worker`` is what runs in each of them,
``shm_store`` owns the bytes of large objects (``shm_files`` the mechanics of its files:
naming, writing, the disk fallback, sweeping dead runtimes' files), ``claims`` decides who
starts a task queued behind another, ``portable`` holds the stand-ins for Linux-only calls.
"""
