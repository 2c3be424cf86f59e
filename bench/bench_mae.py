"""PoLAr-MAE pretraining throughput (events/s) and peak memory against points per event and batch size.

Measured: one optimizer step of `tasks.mae.MaskedPointTask` around a `models.mae.PoLArMAE`, exactly as the Lightning
loop runs it: `training_step` on a (points, mask) batch (tokenisation with the task's `PointTokenizer`, one random
SO(3) rotation per event, masked encoding, decoding, Chamfer + energy losses), then backward, AdamW step (the task's
own `configure_optimizers`, constant learning rate) and zero_grad. Also the tokenizer alone (`MaskedPointTask.tokens`:
C-NMS centres + ball query + FPS + local frame, no gradients) on the same batch, so the table shows which fraction of
a step is tokenisation. Events/s = batch / median step time, after one warm-up step.
Models: `small` (D = 64, 4 encoder blocks, 4 heads, 2 decoder blocks, mini-PointNet widths 64, order encoding 64: the
network of bench/mae_svm_probe.py) and `vit_s` (the `PoLArMAE()` defaults: D = 384, 12 blocks, 6 heads, 4 decoder
blocks, 29.6M parameters). Tokenizer: the 5-voxel preset `PointTokenizer()` (32 points per patch, context length
max_groups = 512 tokens: above ~7k points per event the surplus patches are cut and counted in `dropped`, so the
network's cost saturates while the tokenizer's keeps growing).
Events: `simulate.lartpc` events (seed 0, 30,000 + i), low-energy-scatter cluster 0 dropped and E <= 0.13 MeV removed
(as PoLAr-MAE's loader), normalised by `data.features.pilarnet_spec`. One simulated event has ~0.6-3k points, so the
events are laid end to end into one stream of points in the same 768^3 volume, and an event of N points is a window
of N consecutive points of that stream (the windows of a batch do not overlap). Overlaid tracks start to cross at
large N: the points per patch rise from 13 (N <= 5k) to 18 (20k) and 23 (50k).
Peak memory of a step: on CPU, the growth of the resident set during one extra step above the resident set before it
(malloc_trim first; the peak `VmHWM` reset by writing 5 to /proc/self/clear_refs; where that cannot be written, the
growth of `ru_maxrss`, which never goes down, so later rows read 0 unless they need more); tracemalloc does not see
torch's CPU allocations. On CUDA, `torch.cuda.max_memory_allocated` above the memory allocated before the step, with
bf16 autocast around the step (as `lightning_precision` trains). Never asserts a timing target.

Recorded on the project's 2-core AMD EPYC VM, torch CPU, 1 thread, fp32, median of 3 steps, full table in 594 s wall,
while other jobs shared the machine (load average 1.5 at the start, 2.5 at the end, on 2 cores: a rerun of the ViT-S
N = 20k, B = 4 row gave 17-19 s and then 11-13 s per step, so the ViT-S rows at B = 4 carry +-30 % of load noise):
  model  N      B  tokens  cut   step s  events/s  tokenizer s/event  share of step  peak MiB
  small  1k     1     86      0  0.034   29.7      0.008              24 %            12
  small  1k    16     80      0  0.317   50.4      0.008              39 %           140
  small  5k     4    388      0  0.462    8.7      0.040              34 %           175
  small  20k    4    512    998  1.14     3.5      0.135              47 %           386
  small  50k    4    512   3212  3.48     1.2      0.610              70 %           716
  small  50k   16    512   3228  19.0     0.84     0.583              49 %          1732
  vit_s  1k     1     86      0  0.96     1.04     0.027               3 %           175
  vit_s  5k     4    388      0  10.6     0.38     0.068               3 %          1298
  vit_s  20k    4    512    998  19.0     0.21     0.228               5 %          1895
  vit_s  50k    1    512   3244  5.27     0.19     0.537              10 %           563
Above ~7k points the 512-token context is full: the network's cost grows only with the points per patch,
the tokenizer's keeps growing about linearly, so tokenisation is a quarter to a third of a D = 64 step below
5k points and about half of it above 20k, but 3-10 % of a ViT-S step. Peak memory grows about linearly with the
batch and the tokens per event (ViT-S: the weights and AdamW state, ~340 MiB, held between steps, are not in the
column; the gradients, 113 MiB, freed by zero_grad after each step, are).
It is the process's resident growth: torch's own allocations during the same step, summed by the torch profiler,
are about 2/3 of it (small 5k x 4: 120 vs 183 MiB; ViT-S 1k x 1: 122 vs 180 MiB).

    python bench/bench_mae.py [--repeats 3] [--threads 1] [--quick] [--out bench/results/mae_pretrain.json]
"""

from __future__ import annotations
import argparse
import ctypes
import gc
import os
import resource
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import machine_info

from foundation_jets.core import ParticleSet, autocast, get_device
from foundation_jets.data.features import pilarnet_spec
from foundation_jets.metrics import metrics_to_json
from foundation_jets.models.mae import PoLArMAE, PointTokenizer
from foundation_jets.simulate.lartpc import simulate_lartpc
from foundation_jets.tasks.mae import MaskedPointTask

HERE = Path(__file__).resolve().parent
THRESHOLD = 0.13  # MeV, PoLAr-MAE's energy threshold
CONFIGS = {
    'small': dict(dim=64, depth=4, num_heads=4, decoder_depth=2, order_dim=64, pointnet_widths=(64, 64, 64)),
    'vit_s': {},  # PoLArMAE() defaults: the ViT-S reference
}
FULL = {'small': ((1000, 5000, 20000, 50000), (1, 4, 16)), 'vit_s': ((1000, 5000, 20000, 50000), (1, 4))}
QUICK = {'small': ((1000, 5000), (1, 2)), 'vit_s': ((1000,), (1,))}


def point_stream(n_points: int, seed: int = 0) -> tuple:
    "Raw (x, y, z, E) of simulated events laid end to end, at least `n_points` rows; and the events used."
    parts, total, i = [], 0, 0
    while total < n_points:
        chunk = simulate_lartpc(8, seed=seed, first_event=30_000 + i)
        for e in chunk:
            p = e['point'][e['cluster'][0, 0] :, :4]
            parts.append(p[p[:, 3] > THRESHOLD])
            total += len(parts[-1])
        i += len(chunk)
    return np.concatenate(parts).astype(np.float32), [len(p) for p in parts]


def make_batch(stream: np.ndarray, n: int, batch: int, device) -> tuple:
    "`batch` non-overlapping windows of n points of the stream, normalised by `pilarnet_spec`: (points, mask)."
    x = torch.from_numpy(stream[: n * batch].reshape(batch, n, 4).copy())
    sets = pilarnet_spec()(
        ParticleSet(x, torch.ones(batch, n, dtype=torch.bool), feature_names=('x', 'y', 'z', 'energy'))
    )
    return sets.x.to(device), sets.mask.to(device)


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, repeats: int, device) -> list:
    "Wall times of `repeats` calls after one warm-up."
    fn()
    sync(device)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t0)
    return ts


def _status_kib(field: str) -> int | None:
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith(field + ':'):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    "Reset this process's peak resident set (Linux >= 4.0); False where it cannot."
    try:
        Path('/proc/self/clear_refs').write_text('5')
        return True
    except OSError:
        return False


def _trim():
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_step_mib(fn, device) -> dict:
    "Peak memory growth (MiB) of one call of `fn` above the memory before it."
    if device.type == 'cuda':
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return dict(
            peak_mib=(torch.cuda.max_memory_allocated(device) - base) / 2**20, method='cuda max_memory_allocated'
        )
    _trim()
    if _reset_peak() and _status_kib('VmRSS') is not None:
        base = _status_kib('VmRSS')
        fn()
        return dict(peak_mib=(_status_kib('VmHWM') - base) / 1024, base_mib=base / 1024, method='VmHWM - VmRSS')
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    grow = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    return dict(peak_mib=grow / 1024, method='ru_maxrss growth (a lower bound)')


def make_task(name: str, device, seed: int = 0) -> tuple:
    "A PoLArMAE of config `name` in a MaskedPointTask with the 5-voxel tokenizer, and the task's optimizer."
    torch.manual_seed(seed)
    task = MaskedPointTask(PoLArMAE(**CONFIGS[name]), tokenizer=PointTokenizer(), scheduler=None).to(device).train()
    return task, task.configure_optimizers()


def measure(task, optimizer, points, mask, repeats: int, device) -> dict:
    "Step and tokenizer times, token counts and the peak memory of one step."
    batch = (points, mask)

    def step():
        with autocast(device):
            loss = task.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def tokenize():
        with torch.no_grad(), autocast(device):
            return task.tokens(batch)

    tokens = tokenize()
    step_s = timed(step, repeats, device)
    tokenize_s = timed(tokenize, repeats, device)
    memory = peak_step_mib(step, device)
    b = len(mask)
    step_med, tok_med = statistics.median(step_s), statistics.median(tokenize_s)
    return dict(
        tokens_per_event=float(tokens.mask.sum(1).float().mean()),
        dropped_per_event=float(tokens.dropped.float().mean()),
        points_per_token=float(tokens.point_mask.sum(-1)[tokens.mask].float().mean()),
        step_s=step_s,
        tokenize_s=tokenize_s,
        step_median_s=step_med,
        events_per_s=b / step_med,
        tokenize_per_event_s=tok_med / b,
        tokenize_fraction=tok_med / step_med,
        **memory,
    )


HEADER = (
    f"{'model':6s} {'N':>6s} {'B':>3s} {'tokens':>7s} {'cut':>5s} {'step s':>8s} {'events/s':>9s} "
    f"{'tok s/ev':>9s} {'tok %':>6s} {'peak MiB':>9s}"
)


def row_line(r: dict) -> str:
    "One table row: tokens and cut patches per event, median step, events/s, tokenizer s/event and share, peak."
    return (
        f"{r['model']:6s} {r['points']:6d} {r['batch']:3d} {r['tokens_per_event']:7.0f} "
        f"{r['dropped_per_event']:5.0f} {r['step_median_s']:8.3f} {r['events_per_s']:9.2f} "
        f"{r['tokenize_per_event_s']:9.3f} {100 * r['tokenize_fraction']:6.1f} {r['peak_mib']:9.1f}"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=3, help='timed steps per row after one warm-up (median)')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    ap.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto' (CUDA when available)")
    ap.add_argument('--quick', action='store_true', help='small model at 1k / 5k points, batch 1 / 2, ViT-S 1k x 1')
    ap.add_argument('--out', default=str(HERE / 'results' / 'mae_pretrain.json'))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    plan = QUICK if args.quick else FULL
    repeats = 1 if args.quick else args.repeats
    load_start = os.getloadavg()
    wall0 = time.perf_counter()
    need = max(max(sizes) * max(batches) for sizes, batches in plan.values())
    stream, per_event = point_stream(need)
    sim_s = time.perf_counter() - wall0
    print(
        f'{len(per_event)} simulated events ({len(stream)} points) in {sim_s:.1f} s; {device}, '
        f'{torch.get_num_threads()} thread(s); {"bf16 autocast" if device.type == "cuda" else "fp32"}',
        flush=True,
    )
    print(HEADER, flush=True)
    warnings.filterwarnings('ignore', message='.*self.log.*')  # no Trainer attached: logging is a no-op
    warnings.filterwarnings('ignore', message='.*beyond max_groups.*')  # counted in the 'cut' column
    rows, models = [], {}
    for name, (sizes, batches) in plan.items():
        task, optimizer = make_task(name, device)
        models[name] = dict(config=dict(task.model.config), parameters=sum(p.numel() for p in task.parameters()))
        for n in sizes:
            for b in batches:
                points, mask = make_batch(stream, n, b, device)
                r = dict(model=name, points=n, batch=b, **measure(task, optimizer, points, mask, repeats, device))
                rows.append(r)
                print(row_line(r), flush=True)
        del task, optimizer
        _trim()
    wall_s = time.perf_counter() - wall0
    load_end = os.getloadavg()
    print(f'\nPoLArMAE pretraining step on {device} ({torch.get_num_threads()} thread(s)), wall {wall_s:.0f} s')
    print(HEADER)
    for r in rows:
        print(row_line(r))
    print(f'load average: start {load_start[0]:.2f}, end {load_end[0]:.2f}')
    result = {
        'machine': machine_info(load_start, device),
        'settings': {
            'quick': args.quick,
            'repeats': repeats,
            'precision': 'bf16 autocast' if device.type == 'cuda' else 'fp32',
            'tokenizer': PointTokenizer().config,
            'optimizer': 'AdamW (MaskedPointTask defaults: lr 1e-4, weight decay 0.05), constant lr',
            'plan': {k: {'points': list(s), 'batches': list(b)} for k, (s, b) in plan.items()},
            'simulated_events': len(per_event),
            'simulated_points_per_event': {
                'min': min(per_event),
                'median': float(np.median(per_event)),
                'max': max(per_event),
            },
        },
        'models': models,
        'rows': rows,
        'wall_s': wall_s,
    }
    path = metrics_to_json(result, args.out)
    print(f'wrote {path}')
    return result


if __name__ == '__main__':
    main()
