"""fewzero: few-shot and zero-shot learning research in PyTorch.

Import learners directly (``from fewzero.learners import ProtoNet``); heavy optional parts are imported lazily.
Importing the package declares the built-in names (``fewzero.catalogue``) without importing their modules.
"""

from fewzero import catalogue  # declares the built-in names

__all__ = ["catalogue"]

__version__ = "0.1.0"
