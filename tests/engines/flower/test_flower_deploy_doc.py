"""docs/deploy.md gives the commands the deployment tests run: same programs, same flags."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from flower_processes import register_args, submit_args, superlink_args, supernode_args

DOC = Path(__file__).resolve().parents[3] / "docs" / "deploy.md"


def doc_commands() -> list[list[str]]:
    """Every command line of the page's ```bash blocks (continuations joined, comments dropped)."""
    blocks = re.findall(r"^```bash\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip()]


def test_the_page_runs_the_tests_commands_with_the_same_flags() -> None:
    ca, cert, key = Path("ca.crt"), Path("server.pem"), Path("server.key")
    used = [
        superlink_args(9092), superlink_args(9092, (ca, cert, key)),
        supernode_args(9092, "partition-id=0"), supernode_args(9092, "partition-id=0", ca, Path("site0")),
        register_args(Path("site0.pub")), submit_args(Path("app")),
        ["pfedkit", "flower", "app", "--app"],
    ]
    commands = doc_commands()
    for argv in used:
        words = 3 if argv[0] in ("flwr", "pfedkit") else 1  # the program and its sub-command(s)
        head = argv[:words] if argv[0] != "flwr" or argv[1] != "run" else argv[:2]
        flags = {a for a in argv if a.startswith("--")}
        same = [c for c in commands if c[:len(head)] == head]
        assert same, f"docs/deploy.md has no `{' '.join(head)}` command"
        assert any(flags <= set(c) for c in same), \
            f"docs/deploy.md: no `{' '.join(head)}` line with all of {sorted(flags)}"
