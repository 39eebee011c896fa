"""Experiments above the engines: one run, comparisons over seeds, lr tuning, bench suites, results folders."""
