"""Datasets: one module per dataset (``omniglot``, ``cub``, ``xlsa17``), the in-memory ``ArrayImageDataset``
and the ``ZeroShotData`` container. Import the module you need; nothing here is imported eagerly."""
