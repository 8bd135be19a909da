"""Run logging: metrics.jsonl (one JSON object per step), peak FLOPs for MFU, the loss plot."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.io import atomic_path, write_text

# Dense bf16 peak FLOP/s per device (vendor datasheets, without sparsity). MFU is reported
# only when the device is recognised or --peak-flops is given.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe card is lower (756e12), matched first below
    "H100 PCIe": 756e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


def peak_flops_for(device_name: str | None) -> float | None:
    if not device_name:
        return None
    name = device_name.upper()
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):  # most specific first
        if key.upper() in name:
            return PEAK_BF16_FLOPS[key]
    return None


class MetricsLog:
    """Append-only metrics.jsonl; on resume, records after the checkpoint's step are dropped
    (a killed run may have logged steps that the resumed run will redo)."""

    def __init__(self, path, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            keep = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and _step_of(line) is not None and _step_of(line) <= resume_step]
            write_text("".join(line + "\n" for line in keep), self.path)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict):
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self):
        self._f.close()


def _step_of(line: str):
    try:
        return json.loads(line).get("step")
    except json.JSONDecodeError:  # a line cut by a kill
        return None


def read_metrics(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_loss(metrics_path, png_path, val_points: list[tuple[int, float]] | None = None) -> Path | None:
    """Training loss (raw and smoothed) against step, validation points if any."""
    records = [r for r in read_metrics(metrics_path) if "loss" in r]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    loss = [r["loss"] for r in records]
    smooth, ema = [], None
    for v in loss:
        ema = v if ema is None else 0.9 * ema + 0.1 * v
        smooth.append(ema)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, loss, alpha=0.3, label="train loss")
    ax.plot(steps, smooth, label="train loss (EMA 0.9)")
    if val_points:
        ax.plot([s for s, _ in val_points], [v for _, v in val_points], "o-", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return png_path
