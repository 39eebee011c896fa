"""Machinery an algorithm may call: local training loops, class prototypes, partial sharing."""
