"""Charts for serve.bench reports: throughput and latency against concurrency (matplotlib, Agg).

One line per (run, workload); `compare_charts` draws several runs on the same axes so a base model
and its merge (or two servers) can be read off one picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bench_report import BenchReport, LevelResult

_MARKERS = ("o", "s", "^", "D", "v", "P")


def _series(report: BenchReport) -> dict[str, list[LevelResult]]:
    by_workload: dict[str, list[LevelResult]] = {}
    for result in report.results:
        by_workload.setdefault(result.workload, []).append(result)
    return {w: sorted(rs, key=lambda r: r.concurrency) for w, rs in by_workload.items()}


def _draw(reports: list[BenchReport], out: Path, prefix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    several = len(reports) > 1
    streamed = any(r.stream for r in reports)

    fig_t, (ax_req, ax_tok) = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = 3 if streamed else 1
    fig_l, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False)
    ax_lat = axes[0][0]
    for i, report in enumerate(reports):
        for j, (workload, results) in enumerate(_series(report).items()):
            name = f"{report.label}: {workload}" if several else workload
            color = f"C{(i * 2 + j) % 10}"
            marker = _MARKERS[i % len(_MARKERS)]
            xs = [r.concurrency for r in results]
            ax_req.plot(xs, [r.requests_per_s for r in results], marker=marker, color=color, label=name)
            ax_tok.plot(xs, [r.output_tokens_per_s for r in results], marker=marker, color=color, label=name)
            for field, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
                ys = [getattr(r.latency_s, field) if r.latency_s else float("nan") for r in results]
                ax_lat.plot(xs, ys, style, marker=marker, color=color, label=f"{name} {field}")
            if streamed:
                ttft = [r.ttft_s.p50 if r.ttft_s else float("nan") for r in results]
                itl = [r.itl_s.p50 * 1000 if r.itl_s else float("nan") for r in results]
                axes[0][1].plot(xs, ttft, marker=marker, color=color, label=f"{name} p50")
                axes[0][2].plot(xs, itl, marker=marker, color=color, label=f"{name} p50")

    levels = sorted({r.concurrency for report in reports for r in report.results})

    def style(ax: Any, title: str, ylabel: str) -> None:
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(level) for level in levels])  # 1, 4, 16, 64 rather than 2^k
        ax.set_xlabel("concurrency")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)

    style(ax_req, "requests/s", "requests/s")
    style(ax_tok, "output tokens/s", "tokens/s")
    style(ax_lat, "end-to-end latency", "seconds")
    if streamed:
        style(axes[0][1], "time to first token", "seconds")
        style(axes[0][2], "inter-token latency", "ms")
    title = " vs ".join(r.label for r in reports)
    fig_t.suptitle(f"throughput — {title}")
    fig_l.suptitle(f"latency — {title}")
    paths = [out / f"{prefix}throughput.png", out / f"{prefix}latency.png"]
    for fig, path in zip((fig_t, fig_l), paths, strict=True):
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return paths


def report_charts(report: BenchReport, out: Path) -> list[Path]:
    """throughput.png and latency.png for one run."""
    return _draw([report], out, "")


def compare_charts(reports: list[BenchReport], out: Path) -> list[Path]:
    """compare_throughput.png and compare_latency.png overlaying several runs."""
    return _draw(reports, out, "compare_")
