"""``ray.cloudpickle``: the cloudpickle package actorlib pickles code with, under Ray's
module path, so ``import actorlib.cloudpickle as pickle`` works as Ray's does."""

from cloudpickle import *  # noqa: F403
from cloudpickle import __all__ as __all__
from cloudpickle import __version__ as __version__
