"""Bridges to other libraries, one module or folder per dependency.

``torch`` (named trees of gradients, parameters and deltas; also ``secagg.nn``)
and ``flower`` (strategy, client mod and records for Flower's Message API; also
``secagg.flower``). Each imports its library only when used.
"""
