"""Real Flower processes on 127.0.0.1: a SuperLink, three SuperNodes, ``flwr run``.

The commands are the ones docs/deploy.md gives. Each test starts its processes in their own
sessions, stops every one of them by its pid at the end (`flower_processes.Processes`), bounds
every wait, and uses free ports and a private FLWR_HOME. Slow by nature (Flower starts one
process per message, each importing torch): about a minute each on two cores; marked ``slow``
and still part of the default run.

1. TLS with certificates the test makes, SuperNode authentication with keys it registers through
   ``flwr supernode register``: a pFedGM run of two rounds gives the simulator's numbers, and a
   SuperNode whose key is not registered is refused.
2. Without TLS: a SuperNode killed while it trains (a one-round FedAvg run): the round completes
   with the other replies after its timeout, the run finishes, the loss is logged and the client
   is named in the round's record and its evaluation.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from flower_processes import (  # noqa: E402
    Processes,
    flower_env,
    free_port,
    make_node_key,
    make_tls,
    register_args,
    submit_args,
    superlink_args,
    supernode_args,
    wait_until,
    write_connection,
)
from flower_support import TINY, comparable, comparable_summary  # noqa: E402

from pfedkit.cli.main import main  # noqa: E402
from pfedkit.core.config import load_config  # noqa: E402
from pfedkit.runs.experiment import simulate_config  # noqa: E402

pytestmark = pytest.mark.slow

RUN = (*TINY, "data.num_clients=3", "eval_every=2", "flower.connect_timeout=120")
"""Two rounds on three clients (one SuperNode each), evaluated after the last."""


def start_superlink(procs: Processes, port: int, tls: tuple[Path, Path, Path] | None = None) -> None:
    procs.start("superlink", superlink_args(port, tls))
    wait_until("the SuperLink to listen", lambda: "Uvicorn running on" in procs.log("superlink")
               or procs.procs["superlink"].poll() is not None, timeout=90)
    assert procs.procs["superlink"].poll() is None, procs.log("superlink")[-2000:]


def submit(app: Path, env: dict[str, str], cwd: Path, timeout: float) -> str:
    """``flwr run APP local --stream``: returns its output once the run ended."""
    out = subprocess.run(submit_args(app), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def read_history(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_tls_and_authenticated_supernodes_give_the_simulators_numbers(tmp_path: Path) -> None:
    home, out, app = tmp_path / "flwr-home", tmp_path / "results", tmp_path / "app"
    ca, cert, key = make_tls(tmp_path)
    port = free_port()
    write_connection(home, port, ca)
    env = flower_env(home)
    procs = Processes(tmp_path, env)
    try:
        start_superlink(procs, port, (ca, cert, key))
        for k in range(3):
            private, public = make_node_key(tmp_path, f"site{k}")
            reg = subprocess.run(register_args(public), env=env, capture_output=True, text=True, timeout=60)
            assert reg.returncode == 0 and "registered successfully" in reg.stdout, reg.stdout + reg.stderr
            procs.start(f"site{k}", supernode_args(port, f"partition-id={k}", ca, private))
        intruder_key, _ = make_node_key(tmp_path, "intruder")  # never registered
        procs.start("intruder", supernode_args(port, "partition-id=0", ca, intruder_key, "--max-retries", "2"))

        assert main(["flower", "app", *RUN, "algorithm=pfedgm", f"output={out}", "--app", str(app)]) == 0
        submit(app, env, tmp_path, timeout=420)
        wait_until("summary.json", lambda: (out / "summary.json").exists(), timeout=30)

        wait_until("the intruder to give up", lambda: procs.procs["intruder"].poll() is not None, timeout=60)
        assert procs.procs["intruder"].returncode != 0
        assert "Failed to activate SuperNode" in procs.log("intruder")
    finally:
        procs.stop_all()
    assert all(p.poll() is not None for p in procs.procs.values())

    cfg = load_config(None, [*RUN, "algorithm=pfedgm", f"output={tmp_path / 'sim'}"])
    (tmp_path / "sim").mkdir()
    sim = simulate_config(cfg, out_dir=tmp_path / "sim", progress=False)
    history = read_history(out)
    assert [r["round"] for r in history] == [0, 1, 2]  # pFedGM's warm-up round, then two rounds
    assert comparable(history) == comparable(sim.history)
    assert comparable_summary(json.loads((out / "summary.json").read_text())) == comparable_summary(
        json.loads((tmp_path / "sim" / "summary.json").read_text()))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "sim").iterdir())


STALLING_APP = '''"""pfedkit's ClientApp, except that the node whose node config names a stall round stops there:
it writes its marker file and sleeps, so the test can kill it in the middle of that round."""

import time
from pathlib import Path

from flwr.clientapp import ClientApp

from pfedkit.runs.flower_app import client_app


class Stalling(ClientApp):
    def __call__(self, message, context):
        control = message.content["pfedkit.control"]
        stall = int(context.node_config.get("stall-round", -1))
        if message.metadata.message_type == "train" and int(control["round"]) == stall:
            Path(str(context.node_config["stall-marker"])).write_text(str(stall))
            time.sleep(600)
        return client_app(message, context)


app = Stalling()
'''


def test_a_supernode_killed_mid_round_is_left_out_and_the_run_finishes(tmp_path: Path) -> None:
    home, out, app = tmp_path / "flwr-home", tmp_path / "results", tmp_path / "app"
    marker = tmp_path / "site2-stalled"
    port = free_port()
    write_connection(home, port)
    env = flower_env(home)
    procs = Processes(tmp_path, env)
    try:
        start_superlink(procs, port)
        for k in range(3):
            extra = f' stall-round=1 stall-marker="{marker}"' if k == 2 else ""
            procs.start(f"site{k}", supernode_args(port, f"partition-id={k}{extra}"))
        assert main(["flower", "app", *RUN, "algorithm=fedavg", "train.rounds=1", "flower.round_timeout=30",
                     f"output={out}",
                     "--app", str(app)]) == 0
        (app / "stalling.py").write_text(STALLING_APP)
        project = (app / "pyproject.toml").read_text()
        (app / "pyproject.toml").write_text(project.replace('"pfedkit.runs.flower_app:client_app"', '"stalling:app"'))

        run = subprocess.Popen(submit_args(app), env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.procs["flwr-run"] = run  # type: ignore[assignment]
        wait_until("site 2 to stall in round 1", marker.exists, timeout=300)
        procs.kill("site2")
        log, _ = run.communicate(timeout=300)
        assert run.returncode == 0, log[-3000:]
        wait_until("summary.json", lambda: (out / "summary.json").exists(), timeout=30)
    finally:
        procs.stop_all()
    assert all(p.poll() is not None for p in procs.procs.values())

    (record,) = read_history(out)
    assert record["round"] == 1 and record["clients"] == [0, 1, 2] and record["missing"] == [2]
    assert record["train_loss"] > 0 and record["bytes_up"] == 2 * record["bytes_down"] // 3  # two uploads in
    assert record["eval"]["missing"] == [2] and record["eval"]["test_n"][2] == 0
    assert all(n > 0 for n in record["eval"]["test_n"][:2])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["last_round"] == 1 and summary["last"]["test"]["mean"] > 0
    assert "no reply from client(s) [2]" in log
