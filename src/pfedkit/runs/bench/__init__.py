"""Benchmarks behind ``pfedkit bench NAME``: suites of comparison settings written to docs/results/."""

BENCHMARKS: dict[str, str] = {
    "gm": "pfedkit.runs.bench.gm",
    "gm-ablation": "pfedkit.runs.bench.gm_ablation",
    "gm-scale": "pfedkit.runs.bench.gm_scale",
    "gm-audit": "pfedkit.runs.bench.gm_audit",
    "bpt": "pfedkit.runs.bench.bpt",
    "bpt-ablation": "pfedkit.runs.bench.bpt_ablation",
    "dp": "pfedkit.runs.bench.dp",
    "speed": "pfedkit.runs.bench.speed",
}
"""Benchmark name -> module exposing ``run(options: BenchOptions) -> int``."""
