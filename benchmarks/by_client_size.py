"""Where a comparison's client-mean gap comes from: test accuracy by client size and by how many
training images a client holds of a class, at each run's val-selected round.

    pfedkit compare --algos pfedfda,pfedgm --seeds 3 --workers 2 <overrides> output=results/qty
    python benchmarks/by_client_size.py results/qty --reference pfedfda [--groups 5] [--out FILE]

Reads ``<folder>/<label>/seed<s>/metrics.jsonl`` as `pfedkit compare` writes it; given several
folders (comparisons on the same data, partitions and seeds, e.g. one per pFedGM flag), a run is
named ``<folder name>/<label>``. The clients of
every seed together are ranked by their training-set size and cut into ``--groups`` groups of
(nearly) equal count; a group's accuracy is the mean of its clients' test accuracies, so each
group's difference to the reference, times its share of the clients, adds up to the client-mean
difference (the "share of the gap" column). The second table pools test images by the client's
training count of their class, over all clients and over the smallest group.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pfedkit.engines.report import Record, accuracy_by_class_count, select_round

CLASS_BANDS = [(1, 4), (5, 9), (10, 29), (30, 99), (100, 10**9)]


def selected_records(folders: list[Path]) -> dict[str, dict[int, Record]]:
    """run name -> seed -> the val-selected record of that run."""
    runs: dict[str, dict[int, Record]] = {}
    for folder in folders:
        for path in sorted(folder.glob("*/seed*/metrics.jsonl")):
            history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            label = path.parent.parent.name
            name = label if len(folders) == 1 else f"{folder.name}/{label}"
            runs.setdefault(name, {})[int(path.parent.name[4:])] = select_round(history)
    return runs


def client_table(runs: dict[str, dict[int, Record]], reference: str, groups: int) -> tuple[list[str], list[int]]:
    """The markdown rows of the by-size table, and the (seed-major) indices of the smallest group."""
    seeds = sorted(runs[reference])
    ref = [runs[reference][s]["eval"] for s in seeds]
    sizes = np.concatenate([np.asarray(ev["train_class_n"]).sum(1) for ev in ref])
    held = np.concatenate([(np.asarray(ev["train_class_n"]) > 0).sum(1) for ev in ref])
    test_n = np.concatenate([np.asarray(ev["test_n"], dtype=float) for ev in ref])
    acc = {label: np.concatenate([np.asarray(by_seed[s]["eval"]["test_correct"], dtype=float)
                                  / np.asarray(by_seed[s]["eval"]["test_n"], dtype=float) for s in seeds])
           for label, by_seed in runs.items()}
    others = [label for label in runs if label != reference]
    head = ("| clients by training images | clients | test images / client | classes held | "
            + " | ".join(runs) + " | " + " | ".join(f"{o} − {reference} (share of the gap)" for o in others) + " |")
    rows = [head, "|" + "---|" * (4 + len(runs) + len(others))]
    cut = np.array_split(np.argsort(sizes, kind="stable"), groups)
    for idx in cut + [np.arange(len(sizes))]:
        name = "all" if len(idx) == len(sizes) else f"{int(sizes[idx].min())}-{int(sizes[idx].max())}"
        cells = [name, str(len(idx)), f"{test_n[idx].mean():.0f}", f"{held[idx].mean():.1f}"]
        cells += [f"{100 * acc[label][idx].mean():.2f}" for label in runs]
        for o in others:
            diff = 100 * (acc[o][idx] - acc[reference][idx]).mean()
            cells.append(f"{diff:+.2f} ({diff * len(idx) / len(sizes):+.2f})")
        rows.append("| " + " | ".join(cells) + " |")
    return rows, [int(i) for i in cut[0]]


def class_count_table(runs: dict[str, dict[int, Record]], subset: list[int] | None) -> list[str]:
    """Markdown rows: test accuracy pooled by the client's training count of the class."""
    head = "| method | " + " | ".join(f"{lo}-{hi}" if hi < 10**9 else f"{lo}+" for lo, hi in CLASS_BANDS) + " |"
    rows = [head, "|" + "---|" * (1 + len(CLASS_BANDS))]
    for label, by_seed in runs.items():
        correct, total = np.zeros(len(CLASS_BANDS)), np.zeros(len(CLASS_BANDS))
        offset = 0
        for s in sorted(by_seed):
            k = len(by_seed[s]["eval"]["test_n"])
            clients = None if subset is None else [i - offset for i in subset if offset <= i < offset + k]
            offset += k
            if clients == []:
                continue
            bands = accuracy_by_class_count(by_seed[s], CLASS_BANDS, clients)
            if bands is None:
                raise SystemExit(f"{label} seed {s}: the records have no per-class counts (written by an old version)")
            for b, (a, n) in enumerate(bands):
                correct[b] += 0.0 if n == 0 else a * n
                total[b] += n
        rows.append(f"| {label} | " + " | ".join(
            f"{100 * c / n:.1f} ({int(n)})" if n else "–" for c, n in zip(correct, total)) + " |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", type=Path, nargs="+", help="output folders of `pfedkit compare` runs")
    ap.add_argument("--reference", required=True, help="the method the others are compared with")
    ap.add_argument("--groups", type=int, default=5, help="client groups by training-set size (default 5)")
    ap.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    args = ap.parse_args()
    runs = selected_records(args.folders)
    if args.reference not in runs:
        print(f"error: {args.reference!r} has no runs in {', '.join(map(str, args.folders))} "
              f"(found: {', '.join(runs) or 'none'})",
              file=sys.stderr)
        return 2
    seeds = sorted(runs[args.reference])
    if any(sorted(by_seed) != seeds for by_seed in runs.values()):
        print(f"error: every method needs the reference's seeds {seeds}", file=sys.stderr)
        return 2
    size_rows, smallest = client_table(runs, args.reference, args.groups)
    text = "\n".join(
        [f"Clients of seeds {', '.join(map(str, seeds))} by training-set size; client-mean test accuracy in % "
         "at each run's val-selected round:", ""] + size_rows
        + ["", "Test accuracy in % (test images) by the client's training count of the class, all clients:", ""]
        + class_count_table(runs, None)
        + ["", "The same, the smallest group's clients:", ""] + class_count_table(runs, smallest)) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
