"""Figures for the UIs: learning curves and the model comparison (matplotlib, no display)."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curve_figure(history: list, model_name: str) -> Figure:
    """Training loss and validation Recall@20 per epoch, on twin axes."""
    epochs = [log.epoch for log in history]
    figure, loss_axis = plt.subplots(figsize=(6, 3.5))
    loss_axis.plot(epochs, [log.losses.get("loss", float("nan")) for log in history], color="tab:blue")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    recall_axis = loss_axis.twinx()
    recall_axis.plot(epochs, [log.valid.get("recall@20", float("nan")) for log in history], color="tab:orange")
    recall_axis.set_ylabel("valid Recall@20", color="tab:orange")
    loss_axis.set_title(f"{model_name}: learning curve")
    figure.tight_layout()
    return figure


def comparison_figure(test_metrics: dict[str, dict[str, float]], names: tuple[str, ...]) -> Figure:
    """Grouped bars: one group per metric, one bar per model."""
    models = list(test_metrics)
    figure, axis = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        positions = [m + index * width for m in range(len(names))]
        axis.bar(positions, [test_metrics[model].get(n, 0.0) for n in names], width, label=model)
    axis.set_xticks([m + width * (len(models) - 1) / 2 for m in range(len(names))], names)
    axis.set_ylabel("test")
    axis.set_title("Full-ranking test metrics")
    axis.legend()
    figure.tight_layout()
    return figure


def figure_png(figure: Figure) -> bytes:
    """Render and close a figure."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
