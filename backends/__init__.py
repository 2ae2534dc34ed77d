"""graphopt.backends: code out of the IR. `reference` interprets graphs with the registry's numpy kernels.

>>> from graphopt.backends import reference
>>> callable(reference.run)
True
"""

from . import reference

__all__ = ["reference"]
