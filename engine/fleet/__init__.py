"""Batch work over an archive after deployment: re-analysis on a Ray cluster
(:mod:`engine.fleet.reanalyse`), model versions and shadow comparison
(:mod:`engine.fleet.registry`, :mod:`engine.fleet.compare`) and drift monitoring
(:mod:`engine.fleet.drift`). Ray, pyarrow and matplotlib are the ``[fleet]`` extra."""
