"""Few-shot learners. Each is an ``nn.Module`` with ``fit(support_x, support_y) -> self`` and
``forward(query_x) -> (n_query, n_way)`` logits; see ``Learner``."""
from fewzero.learners.base import EmbeddingLearner, Learner
from fewzero.learners.protonet import ProtoNet

__all__ = ["EmbeddingLearner", "Learner", "ProtoNet"]
