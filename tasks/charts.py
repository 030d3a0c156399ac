"""Charts of a model's figures as SVG: per-class recall against the baseline, the confusion
matrix, and production's accuracy over time.

Drawn on the server with matplotlib's SVG backend, so they need no JavaScript and no network:
the dashboard puts the SVG in its pages, and the nightly attaches it to its flow run as a
Prefect image artifact (a ``data:`` URL, see :func:`svg_data_url`). Text stays text
(``svg.fonttype = none``): the browser draws it, and a reader or a test can find it. Bars of
the recall chart are SVG groups with ids ``recall-candidate-<k>`` / ``recall-baseline-<k>``.

matplotlib costs about a second to import, so it is imported on the first chart; it is not
thread-safe, so one lock serialises drawing (the dashboard serves requests from a thread pool).
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CANDIDATE_COLOUR = "#1f6feb"
BASELINE_COLOUR = "#9aa4b2"
_STYLE = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
_DRAWING = threading.Lock()
LABELLED_POINTS = 12


class AccuracyPoint(NamedTuple):
    """From ``at`` (UTC) on, ``version`` served as production with held-out ``accuracy``
    (a fraction in [0, 1]; None when the version has none recorded)."""

    at: datetime
    version: int
    accuracy: float | None


def recall_chart(
    candidate: Sequence[float], baseline: Sequence[float] | None, *, candidate_label: str, baseline_label: str
) -> str:
    """Grouped bars of per-class recall, the candidate beside its baseline (production).

    Args:
        candidate: recall of class k at index k, fractions in [0, 1].
        baseline: the same for the baseline, or None (a first version: candidate bars only);
            classes it lacks are left out.
        candidate_label, baseline_label: legend entries, e.g. ``"v2"``, ``"production v1"``.

    Returns:
        An SVG document (text).
    """

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        classes = range(len(candidate))
        width = 0.4 if baseline is not None else 0.6
        shift = width / 2 if baseline is not None else 0.0
        bars = axes.bar([k - shift for k in classes], candidate, width, color=CANDIDATE_COLOUR, label=candidate_label)
        for k, bar in enumerate(bars):
            bar.set_gid(f"recall-candidate-{k}")
        if baseline is not None:
            shown = [k for k in classes if k < len(baseline)]
            old = axes.bar([k + shift for k in shown], [baseline[k] for k in shown], width, color=BASELINE_COLOUR, label=baseline_label)
            for k, bar in zip(shown, old):
                bar.set_gid(f"recall-baseline-{k}")
        low = min([*candidate, *(baseline or [])], default=0.0)
        axes.set_ylim(max(0.0, min(0.8, low - 0.05)), 1.0)
        axes.set_xticks(list(classes))
        axes.set_xlabel("class")
        axes.set_ylabel("recall (held-out)")
        axes.set_title("Per-class recall")
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)

    return _svg(draw, (7.0, 3.0))


def confusion_matrix_chart(matrix: Sequence[Sequence[int]], *, title: str) -> str:
    """A heat map of ``matrix`` (counts, int [classes, classes], row = true class, column =
    predicted class), each cell labelled with its count; the diagonal holds the correct answers.

    Returns:
        An SVG document (text).
    """

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        size = len(matrix)
        top = max((max(row) for row in matrix), default=0) or 1
        mesh = axes.pcolormesh(
            [[count / top for count in row] for row in matrix], cmap="Blues", vmin=0.0, vmax=1.0, edgecolors="white", linewidth=0.5
        )
        mesh.set_gid("confusion-matrix")
        for true, row in enumerate(matrix):
            for predicted, count in enumerate(row):
                if count:
                    dark = count / top > 0.55
                    axes.text(predicted + 0.5, true + 0.5, str(count), ha="center", va="center", fontsize=7, color="white" if dark else "#1b1f24")
        axes.set_xticks([k + 0.5 for k in range(size)], [str(k) for k in range(size)])
        axes.set_yticks([k + 0.5 for k in range(size)], [str(k) for k in range(size)])
        axes.invert_yaxis()
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        axes.set_title(title)
        axes.set_aspect("equal")

    return _svg(draw, (4.6, 4.2))


def accuracy_over_time_chart(points: Sequence[AccuracyPoint], *, until: datetime) -> str:
    """A step line of production's held-out accuracy over time: each point holds from its
    ``at`` until the next one (the last until ``until``, usually now); the newest
    :data:`LABELLED_POINTS` are marked and labelled ``v<N>``.

    Args:
        points: production changes, oldest first (e.g. from
            ``RegistryStore.production_history``); points without an accuracy are skipped.
        until: where the line ends (UTC).

    Returns:
        An SVG document (text); with no point, an empty chart saying so.
    """
    known = [point for point in points if point.accuracy is not None]

    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        axes.set_title("Accuracy of production over time")
        axes.set_ylabel("accuracy (held-out)")
        if not known:
            axes.text(0.5, 0.5, "no production version yet", ha="center", va="center", transform=axes.transAxes)
            axes.set_axis_off()
            return
        times = [point.at for point in known] + [max(until, known[-1].at)]
        values = [point.accuracy for point in known]
        line = axes.step(times, [*values, values[-1]], where="post", color=CANDIDATE_COLOUR)[0]
        line.set_gid("production-accuracy")
        # Markers and version labels only where they stay readable (and cheap to draw): the newest few.
        labelled = known[-LABELLED_POINTS:]
        axes.plot([point.at for point in labelled], [point.accuracy for point in labelled], "o", color=CANDIDATE_COLOUR, markersize=4)
        for point in labelled:
            axes.annotate(f"v{point.version}", (point.at, point.accuracy), textcoords="offset points", xytext=(3, 5), fontsize=8)
        low = min(values)
        axes.set_ylim(max(0.0, min(0.8, low - 0.05)), 1.0)
        figure.autofmt_xdate()

    return _svg(draw, (7.0, 3.0))


def inline_svg(document: str) -> str:
    """``document`` without its XML declaration and doctype: an ``<svg>`` element to put in HTML."""
    start = document.find("<svg")
    return document[start:] if start >= 0 else document


def svg_data_url(document: str) -> str:
    """``document`` as a ``data:image/svg+xml;base64,...`` URL (what an ``<img>`` or a Prefect
    image artifact can show without any server)."""
    return "data:image/svg+xml;base64," + base64.b64encode(document.encode()).decode()


def _svg(draw, size: tuple[float, float]) -> str:  # type: ignore[no-untyped-def]
    import matplotlib
    from matplotlib.figure import Figure

    with _DRAWING, matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=size, layout="constrained")
        draw(figure)
        out = io.StringIO()
        figure.savefig(out, format="svg")
    return out.getvalue()
