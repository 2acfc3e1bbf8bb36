"""Registers the built-in zero-shot learners (imported by ``fewzero.registry``).

Each module registers its class with ``@ZERO_SHOT.register(name)``; importing them here is the one place that
makes the names dap, eszsl, ale, devise, sje, sae, fclswgan and cvae available.
"""
from fewzero.zsl.ale import ALE
from fewzero.zsl.cvae import CVAE
from fewzero.zsl.dap import DAP
from fewzero.zsl.devise import DeViSE
from fewzero.zsl.eszsl import ESZSL
from fewzero.zsl.fclswgan import FCLSWGAN
from fewzero.zsl.sae import SAE
from fewzero.zsl.sje import SJE

__all__ = ["ALE", "CVAE", "DAP", "ESZSL", "FCLSWGAN", "SAE", "SJE", "DeViSE"]
