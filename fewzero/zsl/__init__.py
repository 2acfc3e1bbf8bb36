"""Zero-shot learning: learners that fit on seen-class features + class semantics and score any class from its
semantics. See ``fewzero.zsl.base.ZeroShotLearner`` and ``fewzero.zsl.data.ZeroShotData``."""
