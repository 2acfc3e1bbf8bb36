"""Zero-shot learning: learners that fit on seen-class features + class semantics and score any class from its
semantics. See ``fewzero.zsl.base.ZeroShotLearner`` and ``fewzero.data.zero_shot.ZeroShotData``.

    from fewzero.zsl import ESZSL
"""
from fewzero.zsl.ale import ALE
from fewzero.zsl.base import ZeroShotLearner
from fewzero.zsl.cvae import CVAE
from fewzero.zsl.dap import DAP
from fewzero.zsl.devise import DeViSE
from fewzero.zsl.eszsl import ESZSL
from fewzero.zsl.fclswgan import FCLSWGAN
from fewzero.zsl.gcnzsl import GCNZSL
from fewzero.zsl.sae import SAE
from fewzero.zsl.sje import SJE
from fewzero.zsl.tfvaegan import TFVAEGAN

__all__ = ["ALE", "CVAE", "DAP", "DeViSE", "ESZSL", "FCLSWGAN", "GCNZSL", "SAE", "SJE", "TFVAEGAN", "ZeroShotLearner"]
