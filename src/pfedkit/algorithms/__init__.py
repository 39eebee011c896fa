"""Federated algorithms, one file each, against the protocol in ``protocol``."""

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, RoundContext, TrainSettings
from pfedkit.algorithms.registry import algorithm_class, algorithm_names, build_algorithm, register_algorithm

__all__ = ["Algorithm", "ClientUpdate", "RoundContext", "TrainSettings", "algorithm_class",
           "algorithm_names", "build_algorithm", "register_algorithm"]
