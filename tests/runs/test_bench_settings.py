"""Which settings a benchmark run covers: named ones, else all but the long ones at CPU scale."""

from pathlib import Path

from pfedkit.runs.bench import gm_scale
from pfedkit.runs.bench.suite import BenchOptions, Setting, check_outputs, chosen_settings

SHORT, LONG = Setting("short", "short", ()), Setting("long", "long", (), cpu_on_request=True)


def test_cpu_default_skips_settings_on_request_gpu_runs_them():
    assert chosen_settings([SHORT, LONG], BenchOptions(scale="cpu")) == [SHORT]
    assert chosen_settings([SHORT, LONG], BenchOptions(scale="gpu")) == [SHORT, LONG]


def test_named_settings_run_even_when_on_request():
    assert chosen_settings([SHORT, LONG], BenchOptions(settings=("long",))) == [LONG]


def test_existing_results_of_a_setting_not_run_do_not_block(tmp_path: Path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "long.md").write_text("old")
    check_outputs("b", [SHORT, LONG], BenchOptions(out=tmp_path))  # long is not run at cpu scale: no error


def test_gm_scale_full_data_settings_are_on_request_at_cpu_scale():
    chosen = [s.name for s in chosen_settings(gm_scale.SETTINGS, BenchOptions())]
    assert chosen == ["fmnist-10k-dir0.1", "fmnist-10k-qty-dir0.3", "fmnist-100c-dir0.3"]


def test_gm_audit_runs_the_full_data_rows_only_on_request(monkeypatch, tmp_path: Path):
    from pfedkit.runs.bench import gm_audit

    ran: dict[str, int] = {}

    def spy(bench, settings, variants, opts, **kwargs):
        for s in chosen_settings(settings, opts):
            ran[s.name] = len(variants)

    monkeypatch.setattr(gm_audit, "run_suite", spy)
    gm_audit.run(BenchOptions(out=tmp_path))
    rows = len(gm_audit.COMPONENTS)
    assert ran == {"small-fmnist-dir0.1": rows, "large-fmnist-10k-dir0.1": rows, "large-fmnist-10k-qty-dir0.3": rows,
                   "large-fmnist-100c-dir0.3": rows}
    ran.clear()
    gm_audit.run(BenchOptions(out=tmp_path, settings=("full-fmnist-dir0.1",)))
    assert ran == {"full-fmnist-dir0.1": len(gm_audit.FULL_DATA_COMPONENTS)} and len(gm_audit.FULL_DATA_COMPONENTS) == 5
