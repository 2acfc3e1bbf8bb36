"""Few-shot learners. Each is an ``nn.Module`` with ``fit(support_x, support_y) -> self`` and
``forward(query_x) -> (n_query, n_way)`` logits; see ``Learner``."""
from fewzero.learners.base import EmbeddingLearner, Learner
from fewzero.learners.protonet import ProtoNet
from fewzero.learners.maml import MAML, fomaml
from fewzero.learners.anil import ANIL
from fewzero.learners.metasgd import MetaSGD
from fewzero.learners.reptile import Reptile

__all__ = ["ANIL", "EmbeddingLearner", "Learner", "MAML", "MetaSGD", "ProtoNet", "Reptile", "fomaml"]
