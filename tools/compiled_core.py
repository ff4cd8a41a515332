"""Install this tree into a venv with its core compiled by mypyc, to measure that flavour.

``python tools/compiled_core.py VENV`` (run with an interpreter that has mypy, the same
Python version as ``VENV``'s) installs the tree into ``VENV`` as a wheel would, compiles
``actorlib/core`` with mypyc in a scratch directory and puts the extension modules beside
the installed sources, where they win over the ``.py`` files. Then
``python tools/callgrind_ops.py --python VENV/bin/python`` counts that flavour.

A measurement tool, not a supported build: compiling the core did not pay for itself
(docs/performance.md, "A compiled core (mypyc)"). Two modules stay interpreted: mypyc
cannot compile ``waiting.py`` (an async generator) nor run ``serialization.py``'s
cloudpickle subclass.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_COMPILED = ("waiting.py", "serialization.py")

SETUP = """
import glob
from setuptools import setup
from mypyc.build import mypycify
files = [f for f in sorted(glob.glob("actorlib/core/*.py")) if not f.endswith({skip!r})]
setup(name="actorlib-core", packages=[], ext_modules=mypycify(
    ["--config-file", {config!r}, *files], multi_file=True))
"""


def site_packages(venv: str) -> str:
    """The venv's purelib directory, asked of its own interpreter."""
    out = subprocess.run(
        [os.path.join(venv, "bin", "python"), "-c",
         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("venv")
    args = parser.parse_args()
    venv = os.path.abspath(args.venv)
    if not os.path.exists(os.path.join(venv, "bin", "python")):
        parser.error(f"{venv} is not a venv (no bin/python): make one with python3 -m venv")
    subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", ROOT],
                   check=True)
    target = site_packages(venv)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(os.path.join(target, "actorlib"), os.path.join(tmp, "actorlib"))
        with open(os.path.join(tmp, "setup.py"), "w") as f:
            f.write(SETUP.format(skip=NOT_COMPILED,
                                 config=os.path.join(ROOT, "pyproject.toml")))
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-j", "2"],
                       check=True, cwd=tmp, stdout=subprocess.DEVNULL)
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        for path in glob.glob(os.path.join(tmp, f"*__mypyc{suffix}")):
            shutil.copy(path, target)  # the modules' shared runtime, a top-level module
        for path in glob.glob(os.path.join(tmp, "actorlib", "core", f"*{suffix}")):
            shutil.copy(path, os.path.join(target, "actorlib", "core"))
    print(f"compiled core installed in {target}")


if __name__ == "__main__":
    main()
