"""PNG pictures of partitions, image samples, domains and corruptions (matplotlib, Agg canvas).

Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas directly, so nothing here
touches pyplot's global state or needs a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pfedkit.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from pfedkit.data.partition.base import Partition
from pfedkit.data.pool import Pool


def plot_partition(
    partition: Partition,
    labels: np.ndarray,
    num_classes: int,
    path: str | Path,
    domains: np.ndarray | None = None,
    domain_names: Sequence[str] = (),
) -> Path:
    """Per-client stacked label histogram (and per-client domain histogram) as one PNG.

    Args:
        partition: the partition to draw; held-out clients are hatched, corruption names shown
            under the bars when there are at most 40 clients.
        labels: (N,) int class labels of the pool, in [0, num_classes).
        num_classes: number of classes.
        path: output PNG path (parent folders are created).
        domains: optional (N,) int domain ids; adds a second panel.
        domain_names: names indexed by domain id (defaults to "domain d").

    Returns:
        The written path.
    """
    labels = np.asarray(labels)
    counts = partition.label_counts(labels, num_classes)  # (K, num_classes)
    panels = [("class", counts, [str(c) for c in range(num_classes)])]
    if domains is not None:
        domains = np.asarray(domains)
        num_domains = int(domains.max()) + 1 if domains.size else 0
        num_domains = max(num_domains, len(domain_names))
        dom_counts = partition.label_counts(domains, num_domains)
        names = [domain_names[d] if d < len(domain_names) else f"domain {d}" for d in range(num_domains)]
        panels.append(("domain", dom_counts, names))
    k = partition.num_clients
    fig = Figure(figsize=(min(4 + 0.25 * k, 16), 3.2 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    heldout = np.array([bool(m.get("heldout", False)) for m in partition.client_meta] or [False] * k)
    for ax, (what, table, names) in zip(axes, panels):
        _stacked_bars(ax, table, names, heldout, what)
    axes[-1].set_xlabel("client" + (" (hatched: held out)" if heldout.any() else ""))
    if k <= 40 and partition.client_meta and "corruption" in partition.client_meta[0]:
        ticks = [f"{i}\n{m['corruption']}:{m['severity']}" for i, m in enumerate(partition.client_meta)]
        axes[-1].set_xticks(range(k), ticks, rotation=90, fontsize=7)
    fig.suptitle(f"{k} clients, partition {partition.hash[:10]}", fontsize=10)
    return _save(fig, path)


def save_sample_grid(
    images: torch.Tensor,
    row_labels: Sequence[str],
    path: str | Path,
    title: str = "",
    col_labels: Sequence[str] = (),
) -> Path:
    """Tile images into a grid with one labelled row per entry of ``row_labels``.

    Args:
        images: (R * M, C, H, W) images in [0, 1], C = 1 or 3, row-major (row r holds images
            r*M .. r*M + M - 1); R = len(row_labels).
        row_labels: one label per row.
        path: output PNG path.
        title: figure title.
        col_labels: optional labels of the M columns.
    """
    rows = len(row_labels)
    n, c, h, w = images.shape
    if rows == 0 or n % rows:
        raise ValueError(f"{n} images cannot fill {rows} equal rows")
    cols = n // rows
    mosaic = _mosaic(images.detach().float().cpu().clamp(0, 1), rows, cols)
    fig = Figure(figsize=(1.6 + cols * 0.55, 0.6 + rows * 0.55), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(mosaic, cmap="gray" if c == 1 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([r * (h + 1) + h / 2 for r in range(rows)], list(row_labels), fontsize=8)
    if col_labels:
        ax.set_xticks([j * (w + 1) + w / 2 for j in range(cols)], list(col_labels), fontsize=8)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def save_domain_grid(pool: Pool, path: str | Path, per_domain: int = 8, seed: int = 0) -> Path:
    """One row of ``per_domain`` random images per domain of ``pool`` (one row if it has none).

    Images are drawn with ``numpy.random.default_rng(seed)``; rows with fewer images are padded
    with blanks.
    """
    rng = np.random.default_rng(seed)
    if pool.domain is None:
        groups = [(pool.name, np.arange(len(pool)))]
    else:
        dom = pool.domain.cpu().numpy()
        names = pool.domain_names or tuple(str(d) for d in np.unique(dom))
        groups = [(names[d], np.flatnonzero(dom == d)) for d in range(len(names))]
    tiles = []
    for _, idx in groups:
        pick = rng.choice(idx, size=min(per_domain, len(idx)), replace=False) if len(idx) else idx
        row = pool.x[torch.as_tensor(pick, dtype=torch.long)]
        blanks = torch.ones(per_domain - len(pick), *pool.x.shape[1:])
        tiles.append(torch.cat([row, blanks]))
    title = f"{pool.name}: {per_domain} samples per domain"
    return save_sample_grid(torch.cat(tiles), [g[0] for g in groups], path, title)


def save_corruption_grid(
    images: torch.Tensor,
    path: str | Path,
    generator: torch.Generator,
    corruptions: Sequence[str] = CORRUPTIONS,
) -> Path:
    """Rows = corruption types, columns = severities 0..5.

    Args:
        images: (M, C, H, W) images in [0, 1]; row r shows images[r % M].
        path: output PNG path.
        generator: randomness of the noisy corruptions.
        corruptions: the types to show (default: all).
    """
    tiles = []
    for r, name in enumerate(corruptions):
        one = images[r % images.shape[0]].unsqueeze(0)
        tiles.extend(corrupt(one, name, s, generator) for s in SEVERITIES)
    cols = [f"sev {s}" if s else "clean" for s in SEVERITIES]
    return save_sample_grid(torch.cat(tiles), list(corruptions), path, "corruption x severity", cols)


def _stacked_bars(ax, table: np.ndarray, names: list[str], heldout: np.ndarray, what: str) -> None:
    """Stacked per-client counts: bars up to 100 clients, a stepped area plot beyond."""
    k, groups = table.shape
    colors = _palette(groups)
    x = np.arange(k)
    if k <= 100:
        bottom = np.zeros(k)
        for g in range(groups):
            bars = ax.bar(x, table[:, g], 0.9, bottom=bottom, color=colors[g], label=names[g])
            for i in np.flatnonzero(heldout):
                bars[i].set_hatch("//")
            bottom += table[:, g]
    else:
        ax.stackplot(x, table.T, labels=names, colors=colors, step="mid", linewidth=0)
        if heldout.any():
            ax.axvspan(np.flatnonzero(heldout).min() - 0.5, k - 0.5, fill=False, hatch="//", lw=0)
    ax.set_ylabel(f"samples per {what}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.6, k - 0.4)
    if groups <= 20:
        ax.legend(title=what, fontsize=7, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    return [cmap(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]


def _mosaic(images: torch.Tensor, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, C, H, W) -> (rows*(H+1)-1, cols*(W+1)-1[, 3]) array with 1-pixel white gaps."""
    _, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (0, 1, 0, 1), value=1.0)
    grid = padded.view(rows, cols, c, h + 1, w + 1).permute(2, 0, 3, 1, 4)
    out = grid.reshape(c, rows * (h + 1), cols * (w + 1))[:, :-1, :-1].permute(1, 2, 0).numpy()
    return out[:, :, 0] if c == 1 else out


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
