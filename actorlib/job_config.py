"""Ray's ``ray.job_config.JobConfig``: job-wide settings passed as ``init(job_config=...)``.

What applies here: ``runtime_env`` (the job's default, as ``init(runtime_env=)``) and
``ray_namespace`` (as ``init(namespace=)``); an explicit ``init`` argument wins.
``metadata``, ``jvm_options``, ``code_search_path``, ``client_job`` and
``py_driver_sys_path`` are accepted and ignored (Java workers, Ray Client and the job
table have no counterpart). ``default_actor_lifetime="detached"`` would change what
happens to every actor, so it is refused rather than ignored.
"""

from __future__ import annotations

from typing import Any

from actorlib.options import validate_runtime_env

__all__ = ["JobConfig"]


class JobConfig:
    def __init__(
        self,
        jvm_options: list[str] | None = None,
        code_search_path: list[str] | None = None,
        runtime_env: dict[str, Any] | None = None,
        client_job: bool = False,
        metadata: dict[str, str] | None = None,
        ray_namespace: str | None = None,
        default_actor_lifetime: str = "non_detached",
        _py_driver_sys_path: list[str] | None = None,
    ) -> None:
        self.jvm_options = list(jvm_options or [])
        self.code_search_path = list(code_search_path or [])
        self.client_job = client_job
        self.metadata = dict(metadata or {})
        self._py_driver_sys_path = list(_py_driver_sys_path or [])
        self.runtime_env: dict[str, Any] | None = None
        self.ray_namespace: str | None = None
        self.default_actor_lifetime = "non_detached"
        self.set_runtime_env(runtime_env)
        self.set_ray_namespace(ray_namespace)
        self.set_default_actor_lifetime(default_actor_lifetime)

    def set_runtime_env(self, runtime_env: dict[str, Any] | None, validate: bool = False) -> None:
        self.runtime_env = validate_runtime_env(runtime_env, job=True) if runtime_env else None

    def set_ray_namespace(self, ray_namespace: str | None) -> None:
        if ray_namespace is not None and not isinstance(ray_namespace, str):
            raise ValueError(f"JobConfig ray_namespace must be a string, got {ray_namespace!r}")
        self.ray_namespace = ray_namespace

    def set_metadata(self, key: str, value: str) -> None:
        self.metadata[key] = value

    def set_default_actor_lifetime(self, default_actor_lifetime: str) -> None:
        if default_actor_lifetime == "detached":
            raise ValueError(
                'JobConfig default_actor_lifetime="detached" is not supported by actorlib; '
                'pass lifetime="detached" to the actors that should outlive the driver.'
            )
        if default_actor_lifetime != "non_detached":
            raise ValueError(
                'JobConfig default_actor_lifetime must be "non_detached" (actorlib does not '
                f'support "detached" as a default), got {default_actor_lifetime!r}'
            )
        self.default_actor_lifetime = default_actor_lifetime

    def __repr__(self) -> str:
        return (
            f"JobConfig(runtime_env={self.runtime_env!r}, ray_namespace={self.ray_namespace!r}, "
            f"metadata={self.metadata!r})"
        )
