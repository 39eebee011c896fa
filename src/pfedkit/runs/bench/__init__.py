"""Benchmarks behind ``pfedkit bench NAME``: suites of comparison settings written to docs/results/."""

BENCHMARKS: dict[str, str] = {
    "gm": "pfedkit.runs.bench.gm",
    "gm-ablation": "pfedkit.runs.bench.gm_ablation",
    "bpt": "pfedkit.runs.bench.bpt",
    "bpt-ablation": "pfedkit.runs.bench.bpt_ablation",
}
"""Benchmark name -> module exposing ``run(options: BenchOptions) -> int``."""
