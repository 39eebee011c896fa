"""Benchmarks behind ``pfedkit bench NAME``: suites of comparison settings written to docs/results/."""

BENCHMARKS: dict[str, str] = {
    "gm": "pfedkit.bench.gm",
    "gm-ablation": "pfedkit.bench.gm_ablation",
}
"""Benchmark name -> module exposing ``run(options: BenchOptions) -> int``."""
