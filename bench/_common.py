"""Helpers shared by the benchmark scripts: the machine record written into every JSON result, and the power-law
fit of a time against a size."""

from __future__ import annotations
import math
import os
import platform
import sys

import numpy as np
import torch


def machine_info(
    load_start: tuple,  # os.getloadavg() taken when the measurements started
    device: torch.device | None = None,  # the device measured (None: CPU)
) -> dict:  # platform, processor, cpus, device, torch, python, threads, load averages at start and end
    "What the numbers were measured on, and how busy the machine was."
    device = torch.device('cpu') if device is None else device
    return {
        'platform': platform.platform(),
        'processor': platform.processor() or platform.machine(),
        'cpus': os.cpu_count(),
        'device': str(device),
        'device_name': torch.cuda.get_device_name(device) if device.type == 'cuda' else None,
        'torch': torch.__version__,
        'python': sys.version.split()[0],
        'torch_threads': torch.get_num_threads(),
        'load_average_start': list(load_start),
        'load_average_end': list(os.getloadavg()),
    }


def power_law(ns, ts) -> dict:
    "Least-squares fit of log t = log a + b log N."
    b, log_a = np.polyfit(np.log(ns), np.log(ts), 1)
    return {'a': float(math.exp(log_a)), 'b': float(b)}


def power_laws_by_batch(
    rows: list,  # measurement rows, each with 'batch', the size and the timed keys
    size_key: str,  # the row key of the size N
    keys: tuple,  # the row keys to fit against N
) -> dict:  # 'batch{b}' -> {key: {'a', 'b'}} for each batch size present
    "A power law t = a N^b per timed key and batch size."
    fits = {}
    for batch in sorted({r['batch'] for r in rows}):
        sel = [r for r in rows if r['batch'] == batch]
        sizes = [r[size_key] for r in sel]
        fits[f'batch{batch}'] = {k: power_law(sizes, [r[k] for r in sel]) for k in keys}
    return fits
