"""Turn the targets' results into rows with ratios, a terminal table, JSON and a plot.

A ratio is always "how many times better actorlib is": actorlib / alternative for
rates (units ending in ``/s``), alternative / actorlib for times and memory. So a
ratio above 1 means actorlib did better, below 1 worse.
"""

from __future__ import annotations

import importlib
import json
import math
from typing import Any

from actorlib.bench import workloads as w

RATIO_NOTE = (
    "ratio = how many times better actorlib is (> 1: actorlib better): "
    "actorlib/alt for rates (/s), alt/actorlib for time and memory"
)


def ratio(ours: float, theirs: float, higher_is_better: bool) -> float | None:
    if not (ours > 0 and theirs > 0):
        return None
    return ours / theirs if higher_is_better else theirs / ours


def build_rows(targets: dict[str, dict[str, Any]], against: list[str]) -> list[dict[str, Any]]:
    """One row per metric: actorlib's value and each alternative's, with the ratio."""
    ours = targets.get("actorlib", {}).get("metrics", {})
    order: list[str] = list(ours)
    for name in against:
        for metric in targets.get(name, {}).get("metrics", {}):
            if metric not in order:
                order.append(metric)
    workload_rank = {name: i for i, name in enumerate(w.WORKLOADS)}
    order.sort(key=lambda m: workload_rank.get(m.split(".")[0], len(workload_rank)))
    rows = []
    for metric in order:
        base = ours.get(metric)
        any_m = base or next(
            targets[n]["metrics"][metric] for n in against
            if metric in targets.get(n, {}).get("metrics", {})
        )
        row: dict[str, Any] = {
            "metric": metric,
            "workload": any_m["workload"],
            "unit": any_m["unit"],
            "higher_is_better": any_m["higher_is_better"],
            "actorlib": _value(base),
            "alternatives": {},
        }
        for name in against:
            theirs = targets.get(name, {}).get("metrics", {}).get(metric)
            if theirs is None:
                continue
            entry = _value(theirs)
            assert entry is not None
            entry["ratio"] = (
                ratio(base["mean"], theirs["mean"], row["higher_is_better"])
                if base is not None else None
            )
            row["alternatives"][name] = entry
        rows.append(row)
    return rows


def _value(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"mean": m["mean"], "stdev": m["stdev"], "extras": m.get("extras", {})}


# --------------------------------------------------------------------------- formatting


def fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def table(result: dict[str, Any]) -> str:
    """The terminal table plus notes (skips, errors, extras)."""
    against: list[str] = result["options"]["against"]
    ran = [a for a in against if a in result["targets"]]
    backend = result["options"]["backend"]
    header = ["workload", "unit", f"actorlib ({backend})"]
    for name in ran:
        header += [name, "ratio"]
    lines = [header]
    for row in result["rows"]:
        base = row["actorlib"]
        cells = [row["metric"], row["unit"],
                 "-" if base is None else f"{fmt(base['mean'])} ± {fmt(base['stdev'])}"]
        for name in ran:
            alt = row["alternatives"].get(name)
            cells += ["-", ""] if alt is None else [fmt(alt["mean"]), fmt_ratio(alt["ratio"])]
        lines.append(cells)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        out = []
        for i, (c, width) in enumerate(zip(cells, widths, strict=True)):
            out.append(c.ljust(width) if i < 2 else c.rjust(width))
        return "  ".join(out).rstrip()

    text = [RATIO_NOTE, render(header), "  ".join("-" * x for x in widths)]
    text += [render(c) for c in lines[1:]]
    text += _notes(result)
    return "\n".join(text)


def _notes(result: dict[str, Any]) -> list[str]:
    notes: list[str] = []
    for name, reason in result["skipped_targets"].items():
        notes.append(f"skipped {name}: {reason}")
    for name, t in result["targets"].items():
        label = f"{name} ({t['backend']})" if t.get("backend") else name
        for wl, reason in t.get("errors", {}).items():
            notes.append(f"error in {label} {wl}: {reason}")
        skipped = t.get("skipped", {})
        if skipped and name == "actorlib":
            for wl, reason in skipped.items():
                notes.append(f"skipped actorlib {wl}: {reason}")
    ours = result["targets"].get("actorlib", {}).get("metrics", {})
    for metric in ("get_large", "task_result_large", "startup", "idle_memory.pss"):
        if metric in ours and ours[metric].get("extras"):
            notes.append(f"actorlib {metric}: {_kv(ours[metric]['extras'])}")
        for name in result["options"]["against"]:
            m = result["targets"].get(name, {}).get("metrics", {}).get(metric)
            if m and m.get("extras"):
                notes.append(f"{name} {metric}: {_kv(m['extras'])}")
    if notes:
        notes.insert(0, "")
    return notes


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def write_json(result: dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


# --------------------------------------------------------------------------- plot


class PlotUnavailableError(RuntimeError):
    pass


def require_matplotlib() -> None:
    try:
        importlib.import_module("matplotlib")
    except ImportError as exc:
        raise PlotUnavailableError(
            "--plot needs matplotlib, which is not installed: "
            "pip install 'actorlib[plot]' (or pip install matplotlib)"
        ) from exc


def plot(result: dict[str, Any], path: str) -> None:
    """A bar chart of the ratios (log scale; the line at 1 is parity), written to ``path``."""
    fig = figure(result)
    fig.savefig(path, dpi=120)
    importlib.import_module("matplotlib.pyplot").close(fig)


def figure(result: dict[str, Any]) -> Any:
    """The chart of :func:`plot`, as a matplotlib figure."""
    require_matplotlib()
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    against = [a for a in result["options"]["against"] if a in result["targets"]]
    rows = [r for r in result["rows"]
            if any(r["alternatives"].get(a, {}).get("ratio") for a in against)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.8))
    width = 0.8 / max(1, len(against))
    for i, name in enumerate(against):
        xs, ys = [], []
        for j, r in enumerate(rows):
            rt = r["alternatives"].get(name, {}).get("ratio")
            if rt:
                xs.append(j + (i - (len(against) - 1) / 2) * width)
                ys.append(rt)
        ax.bar(xs, ys, width=width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ticker = importlib.import_module("matplotlib.ticker")
    label = ticker.FuncFormatter(lambda v, _pos: f"{v:g}x")
    ax.yaxis.set_major_formatter(label)
    # Between the decades only 2x and 5x are marked: every minor tick labelled, the labels
    # of a wide range (0.4x to 200x) run into each other.
    ax.yaxis.set_minor_locator(ticker.LogLocator(base=10.0, subs=(2.0, 5.0)))
    ax.yaxis.set_minor_formatter(label)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["metric"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel("actorlib is N times better (> 1: better)")
    backend = result["options"]["backend"]
    ax.set_title(f"actorlib ({backend} backend) vs alternatives, "
                 f"{result['options']['num_cpus']} CPUs")
    ax.legend()
    fig.tight_layout()
    return fig
