"""Registers the built-in zero-shot learners (imported by ``fewzero.registry``)."""
