"""runtime_env ``working_dir`` and ``py_modules``: packed on the driver, shipped where the
work runs, extracted once per node; checked at ``init`` / ``.options()`` / ``.remote()``.

The thread and sim backends run work in the driver's process, whose cwd and imports are
process-wide: there both fields raise ``NotSupportedError`` at submission (as documented in
docs/backends.md), and that is what these tests check on them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from testkit import T

import actorlib
from actorlib import exceptions as exc

pytestmark = pytest.mark.shared_runtime

SHARED_PROCESS = ("thread", "sim")  # documented: no working_dir / py_modules there


def _project(root: Path, text: str = "hello from the working_dir") -> tuple[Path, Path, str]:
    """A working_dir with a data file and a package only it holds, and a py_module with a
    name of its own (no other test, nor the driver, can have imported it)."""
    mod = f"envmod_{uuid.uuid4().hex[:10]}"
    project = root / "proj"
    (project / "data").mkdir(parents=True)
    (project / "data" / "input.txt").write_text(text)
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "junk.pyc").write_bytes(b"x")
    (project / "skipme.log").write_text("left out by excludes")
    library = root / "lib" / mod
    library.mkdir(parents=True)
    (library / "__init__.py").write_text("def answer():\n    return 42\n")
    return project, library, mod


@actorlib.remote
def read_in_env(mod: str) -> dict[str, Any]:
    import importlib

    return {
        "data": open(os.path.join("data", "input.txt")).read(),  # relative to working_dir
        "answer": importlib.import_module(mod).answer(),
        "cwd": os.getcwd(),
        "listing": sorted(os.listdir(".")),
    }


@actorlib.remote
class EnvReader:
    def read(self, mod: str) -> tuple[str, int]:
        import importlib

        return open("data/input.txt").read(), importlib.import_module(mod).answer()


def test_task_reads_working_dir_and_imports_py_module(rt: Any, tmp_path: Path) -> None:
    project, library, mod = _project(tmp_path)
    env = {"working_dir": str(project), "py_modules": [str(library)], "excludes": ["*.log"]}
    task = read_in_env.options(runtime_env=env)
    if rt.backend in SHARED_PROCESS:
        with pytest.raises(exc.NotSupportedError, match="runtime_env 'working_dir'"):
            task.remote(mod)
        return
    got = actorlib.get(task.remote(mod), timeout=T)
    assert got["data"] == "hello from the working_dir"
    assert got["answer"] == 42
    assert got["cwd"] != str(project)  # a copy, not the driver's directory
    assert got["listing"] == ["data"]  # __pycache__ and excludes left out
    # The same environment is packed once and served by the same extracted copy.
    again = actorlib.get(task.remote(mod), timeout=T)
    assert again["cwd"] == got["cwd"]


@actorlib.remote
def import_from_cwd(mod: str) -> int:
    import importlib

    return importlib.import_module(mod).answer()


def test_a_module_only_in_the_working_dir_imports(rt: Any, tmp_path: Path) -> None:
    """The working_dir is on the worker's import path, as in Ray: a module that only
    the temporary directory holds imports (the driver cannot import it)."""
    mod = f"wdmod_{uuid.uuid4().hex[:10]}"
    project = tmp_path / "proj"
    project.mkdir()
    (project / f"{mod}.py").write_text("def answer():\n    return 43\n")
    task = import_from_cwd.options(runtime_env={"working_dir": str(project)})
    if rt.backend in SHARED_PROCESS:
        with pytest.raises(exc.NotSupportedError, match="runtime_env 'working_dir'"):
            task.remote(mod)
        return
    assert actorlib.get(task.remote(mod), timeout=T) == 43


def test_actor_with_py_modules_given_as_a_module(rt: Any, tmp_path: Path) -> None:
    import importlib
    import sys

    project, library, mod = _project(tmp_path, "actor data")
    sys.path.insert(0, str(library.parent))
    try:
        module = importlib.import_module(mod)
    finally:
        sys.path.remove(str(library.parent))
        sys.modules.pop(mod, None)
    env = {"working_dir": str(project), "py_modules": [module]}
    if rt.backend in SHARED_PROCESS:
        with pytest.raises(exc.NotSupportedError, match="runtime_env 'working_dir', 'py_modules'"):
            EnvReader.options(runtime_env=env).remote()
        return
    actor = EnvReader.options(runtime_env=env).remote()
    assert actorlib.get(actor.read.remote(mod), timeout=T) == ("actor data", 42)


@actorlib.remote
def child_answer(mod: str) -> int:
    import importlib

    return importlib.import_module(mod).answer()


@actorlib.remote
def parent_answer(mod: str) -> int:
    """Submits a child that names no runtime_env: it runs in this task's environment."""
    return actorlib.get(child_answer.remote(mod), timeout=T)


def test_nested_work_inherits_the_parents_env(rt: Any, tmp_path: Path) -> None:
    _, library, mod = _project(tmp_path)
    parent = parent_answer.options(runtime_env={"py_modules": [str(library)]})
    if rt.backend in SHARED_PROCESS:
        with pytest.raises(exc.NotSupportedError, match="runtime_env 'py_modules'"):
            parent.remote(mod)
        return
    assert actorlib.get(parent.remote(mod), timeout=T) == 42


def test_work_without_the_env_does_not_see_it(rt: Any, tmp_path: Path) -> None:
    """Workers are dedicated to one environment: a plain task never sees a py_module."""
    _, library, mod = _project(tmp_path)

    @actorlib.remote
    def can_import(name: str) -> bool:
        import importlib.util

        return importlib.util.find_spec(name) is not None

    with_env = can_import.options(runtime_env={"py_modules": [str(library)]})
    if rt.backend in SHARED_PROCESS:
        with pytest.raises(exc.NotSupportedError, match="runtime_env 'py_modules'"):
            with_env.remote(mod)
        assert actorlib.get(can_import.remote(mod), timeout=T) is False
        return
    assert actorlib.get([with_env.remote(mod) for _ in range(3)], timeout=T) == [True] * 3
    assert actorlib.get([can_import.remote(mod) for _ in range(3)], timeout=T) == [False] * 3


@pytest.mark.fresh_runtime  # starts runtimes of its own, with a job runtime_env
def test_job_env_changed_between_inits_is_shipped_anew(
    rt: Any, backend_name: str, tmp_path: Path
) -> None:
    project, library, mod = _project(tmp_path, "first")
    env = {"working_dir": str(project), "py_modules": [str(library)]}
    seen = []
    for text, answer in (("first", 42), ("second", 7)):
        (project / "data" / "input.txt").write_text(text)
        (library / "__init__.py").write_text(f"def answer():\n    return {answer}\n")
        actorlib.shutdown()
        if backend_name in SHARED_PROCESS:
            with pytest.raises(exc.NotSupportedError, match="runtime_env 'working_dir'"):
                actorlib.init(backend=backend_name, num_cpus=2, runtime_env=env)
            assert not actorlib.is_initialized()
            return
        actorlib.init(backend=backend_name, num_cpus=2, runtime_env=env)
        got = actorlib.get(read_in_env.remote(mod), timeout=T)
        assert (got["data"], got["answer"]) == (text, answer)
        seen.append(got["cwd"])
    assert seen[0] != seen[1]  # a new content hash, extracted anew
    actorlib.shutdown()
    assert not any(os.path.exists(d) for d in seen)  # the node's copies went with it


def test_bad_runtime_env_files_are_refused_naming_the_option(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(TypeError, match=r"runtime_env\['working_dir'\] must be a local"):
        read_in_env.options(runtime_env={"working_dir": 3})
    with pytest.raises(FileNotFoundError, match=r"runtime_env\['working_dir'\].*does not exist"):
        read_in_env.options(runtime_env={"working_dir": missing})
    with pytest.raises(TypeError, match=r"runtime_env\['py_modules'\] must be a list"):
        read_in_env.options(runtime_env={"py_modules": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match=r"runtime_env\['py_modules'\]\[1\]"):
        read_in_env.options(runtime_env={"py_modules": [str(tmp_path), missing]})
    with pytest.raises(TypeError, match=r"runtime_env\['excludes'\] must be a list of str"):
        read_in_env.options(runtime_env={"working_dir": str(tmp_path), "excludes": "*.log"})
    with pytest.raises(ValueError, match=r"remote URIs"):
        read_in_env.options(runtime_env={"working_dir": "s3://bucket/proj.zip"})
    with pytest.raises(ValueError, match=r"'pip' are not supported"):
        EnvReader.options(runtime_env={"pip": ["requests"]})


def test_rays_runtime_env_config_is_checked_then_has_nothing_to_act_on() -> None:
    """``runtime_env["config"]`` (Ray's ``RuntimeEnvConfig``) is about Ray's installs."""
    from actorlib.runtime_env import RuntimeEnv, RuntimeEnvConfig

    given = {"env_vars": {"K": "v"}, "config": {"setup_timeout_seconds": 60}}
    assert read_in_env.options(runtime_env=given) is not None
    env = RuntimeEnv(env_vars={"K": "v"}, config=RuntimeEnvConfig(eager_install=False))
    assert env == {"env_vars": {"K": "v"}}  # nothing of it reaches the work
    assert RuntimeEnvConfig() == {"setup_timeout_seconds": 600, "eager_install": True,
                                  "log_files": []}
    for bad, error, words in (
        (3, TypeError, r"runtime_env\['config'\] must be a dict"),
        ({"retries": 2}, ValueError, r"'retries' are unknown"),
        ({"setup_timeout_seconds": 0}, ValueError, r"positive int or -1"),
        ({"setup_timeout_seconds": True}, ValueError, r"positive int or -1"),
        ({"eager_install": "yes"}, TypeError, r"eager_install'\] must be a bool"),
        ({"log_files": "a.log"}, TypeError, r"log_files'\] must be a list of str"),
    ):
        with pytest.raises(error, match=words):
            read_in_env.options(runtime_env={"config": bad})
    with pytest.raises(ValueError, match="positive int"):
        RuntimeEnvConfig(setup_timeout_seconds=-5)


def test_oversized_working_dir_fails_with_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actorlib.runtime_env_files import MAX_BYTES_ENV, pack

    (tmp_path / "big.bin").write_bytes(b"x" * 2048)
    monkeypatch.setenv(MAX_BYTES_ENV, "1000")
    with pytest.raises(ValueError, match=r"working_dir.*more than 1000 bytes.*excludes"):
        pack(str(tmp_path), "runtime_env['working_dir']")
    assert pack(str(tmp_path), "runtime_env['working_dir']", ("*.bin",)).hash


def test_packing_is_deterministic_and_follows_content(tmp_path: Path) -> None:
    from actorlib.runtime_env_files import pack

    (tmp_path / "a.py").write_text("A = 1\n")
    first = pack(str(tmp_path), "working_dir")
    os.utime(tmp_path / "a.py", (1, 1))  # times are not content
    assert pack(str(tmp_path), "working_dir") == first
    (tmp_path / "a.py").write_text("A = 2\n")
    assert pack(str(tmp_path), "working_dir").hash != first.hash


def test_runtime_env_class_takes_the_file_fields(tmp_path: Path) -> None:
    from actorlib.runtime_env import RuntimeEnv

    project, library, _ = _project(tmp_path)
    env = RuntimeEnv(working_dir=str(project), py_modules=[str(library)], excludes=["*.log"])
    assert env.working_dir() == str(project) and env.py_modules() == [str(library)]
    assert RuntimeEnv.deserialize(env.serialize()) == env
    with pytest.raises(FileNotFoundError, match=r"runtime_env\['working_dir'\]"):
        RuntimeEnv(working_dir=str(tmp_path / "missing"))


def test_received_packages_share_one_copy() -> None:
    """Each spec carries its package; a process that receives many keeps one copy."""
    import pickle

    from actorlib.core.specs import CodeEnv, Package

    package = Package("feed", b"zip bytes" * 100)
    first, second = (pickle.loads(pickle.dumps(CodeEnv(package))) for _ in range(2))
    assert first.working_dir is second.working_dir
    assert first.working_dir == package and first.key == "feed"
