"""``actorlib bench --plot``: the chart of the ratios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actorlib.bench import report


def _result(ratios: dict[str, float]) -> dict[str, Any]:
    """A bench result with one row per ratio, against Ray."""
    return {
        "options": {"against": ["ray"], "backend": "process", "num_cpus": 2},
        "targets": {"ray": {}},
        "rows": [
            {"metric": name, "alternatives": {"ray": {"ratio": ratio}}}
            for name, ratio in ratios.items()
        ],
    }


def test_the_chart_is_written_as_a_png(tmp_path: Path) -> None:
    path = tmp_path / "ratios.png"
    report.plot(_result({"tasks_sync": 9.0, "pool_map": 0.8}), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_wide_range_of_ratios_labels_only_2x_and_5x_between_decades() -> None:
    """Every minor tick of a log axis labelled from 0.4x to 200x ran into each other."""
    fig = report.figure(_result({"startup": 0.4, "put_small": 183.0, "pool_map": 0.99}))
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        minor = {
            label.get_text() for label in ax.yaxis.get_minorticklabels()
            if label.get_text() and low <= label.get_position()[1] <= high
        }
        assert {"2x", "5x", "20x", "50x"} <= minor <= {"0.5x", "2x", "5x", "20x", "50x", "200x"}
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
