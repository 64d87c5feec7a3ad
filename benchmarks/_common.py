"""What every benchmark script shares: naming the device, writing its figures as JSON."""
from __future__ import annotations

import json
import platform

import torch


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's (as far as the platform says) - recorded beside every figure."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def write_json(path, result: dict) -> None:
    """Write a benchmark's figures to ``path`` (no-op when ``path`` is empty)."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
