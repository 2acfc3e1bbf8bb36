"""Few-shot learners. Each is an ``nn.Module`` with ``fit(support_x, support_y) -> self`` and
``forward(query_x) -> (n_query, n_way)`` logits; see ``Learner``."""
from fewzero.learners.base import EmbeddingLearner, Learner
from fewzero.learners.protonet import ProtoNet
from fewzero.learners.maml import MAML, fomaml
from fewzero.learners.anil import ANIL
from fewzero.learners.metasgd import MetaSGD
from fewzero.learners.mamlpp import MAMLpp
from fewzero.learners.reptile import Reptile
from fewzero.learners.baseline import Baseline, BaselinePlusPlus
from fewzero.learners.simpleshot import SimpleShot
from fewzero.learners.logreg import LogisticRegressionLearner
from fewzero.learners.finetune import FineTune
from fewzero.learners.matching import MatchingNetwork
from fewzero.learners.relation import RelationNetwork

__all__ = ["ANIL", "Baseline", "BaselinePlusPlus", "EmbeddingLearner", "FineTune", "Learner",
           "LogisticRegressionLearner", "MAML", "MAMLpp", "MatchingNetwork", "MetaSGD", "ProtoNet", "RelationNetwork", "Reptile",
           "SimpleShot", "fomaml"]
