"""Ray's ``ray.util.joblib``: joblib's ``Parallel`` (scikit-learn's ``n_jobs``) on actorlib.

::

    import joblib
    from actorlib.util.joblib import register_ray

    register_ray()
    with joblib.parallel_backend("ray"):
        results = joblib.Parallel(n_jobs=4)(joblib.delayed(f)(x) for x in data)

The ``"ray"`` backend runs joblib's batches as tasks of an :class:`actorlib.Pool` (so on
whatever backend the runtime uses, starting the default one if none runs), ``n_jobs``
at a time; ``n_jobs=-1`` is every CPU of the runtime. joblib is not a dependency of
actorlib: ``pip install joblib``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register_ray"]


def register_ray() -> None:
    """Register joblib's ``"ray"`` parallel backend, as Ray's ``register_ray`` does."""
    try:
        import joblib
    except ImportError as exc:
        raise ImportError(
            "register_ray() needs joblib, which actorlib does not install: pip install joblib"
        ) from exc
    joblib.register_parallel_backend("ray", _backend_class())


def _backend_class() -> type[Any]:
    """joblib's backend class, made on first use (joblib is imported only then)."""
    global _Backend
    if _Backend is not None:
        return _Backend
    from joblib._parallel_backends import (
        AutoBatchingMixin,
        ParallelBackendBase,
        PoolManagerMixin,
    )

    import actorlib
    from actorlib.pool import Pool

    class RayBackend(PoolManagerMixin, AutoBatchingMixin, ParallelBackendBase):
        """joblib's multiprocessing backend with an :class:`actorlib.Pool` for its pool."""

        supports_retrieve_callback = True

        def __init__(self, nesting_level: int | None = None,
                     inner_max_num_threads: int | None = None,
                     ray_remote_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
            _no_remote_args(ray_remote_args)
            super().__init__(nesting_level=nesting_level,
                             inner_max_num_threads=inner_max_num_threads, **kwargs)

        def effective_n_jobs(self, n_jobs: int | None) -> int:
            if n_jobs == 0:
                raise ValueError("n_jobs == 0 in Parallel has no meaning")
            if n_jobs is None:
                return 1
            if n_jobs < 0:  # -1: every CPU of the runtime; -2: all but one; ...
                cpus = int(actorlib.cluster_resources().get("CPU", 1))
                return max(cpus + 1 + n_jobs, 1)
            return int(n_jobs)

        def configure(self, n_jobs: int | None = 1, parallel: Any = None, prefer: Any = None,
                      require: Any = None, ray_remote_args: dict[str, Any] | None = None,
                      **pool_args: Any) -> int:
            # ``pool_args``: joblib's memmapping options for its own pool (``max_nbytes``,
            # ``mmap_mode``, ``temp_folder``): large arrays reach actorlib's workers
            # through its object store, zero-copy, without them.
            _no_remote_args(ray_remote_args)
            jobs = self.effective_n_jobs(n_jobs)
            self._pool = Pool(jobs)
            self.parallel = parallel
            return jobs

    _Backend = RayBackend
    return RayBackend


def _no_remote_args(ray_remote_args: dict[str, Any] | None) -> None:
    if ray_remote_args:
        from actorlib.exceptions import NotSupportedError

        raise NotSupportedError(
            "ray_remote_args (options of the Ray actors in Ray's pool) is not supported by "
            "joblib's 'ray' backend on actorlib, whose pool runs tasks with the default "
            "options"
        )


_Backend: type[Any] | None = None
