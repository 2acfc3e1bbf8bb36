"""fewzero: few-shot and zero-shot learning research in PyTorch.

Import learners directly (``from fewzero.learners import ProtoNet``); heavy optional parts are imported lazily.
"""

__version__ = "0.1.0"
