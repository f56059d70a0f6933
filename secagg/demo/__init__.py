"""The federated demo behind ``python -m secagg demo`` and ``make demo``.

It uses the library only through its public API (``secagg.generate``,
``PublicContext``, ``Aggregator``, ``secagg.nn``, ``secagg.dp``) and needs the
``demo`` extra (torch, scikit-learn, matplotlib, tqdm, dp-accounting).
"""
