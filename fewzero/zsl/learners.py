"""Registers the built-in zero-shot learners (imported by ``fewzero.registry``).

Each module registers its class with ``@ZERO_SHOT.register(name)``; importing them here is the one place that
makes the names dap, eszsl, ale, devise, sje and sae available.
"""
from fewzero.zsl.ale import ALE
from fewzero.zsl.dap import DAP
from fewzero.zsl.devise import DeViSE
from fewzero.zsl.eszsl import ESZSL
from fewzero.zsl.sae import SAE
from fewzero.zsl.sje import SJE

__all__ = ["ALE", "DAP", "DeViSE", "ESZSL", "SAE", "SJE"]
