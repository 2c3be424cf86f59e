"""Tracking-JEPA pretraining throughput and peak memory against the number of hits per event.

Measured: one complete pretraining step of `foundation_jets.tasks.jepa.JEPATask` (wedge sampling, radial split,
packing of the context and target regions capped at `max_hits`, context encoder + aggregator, EMA target encoder,
predictor, Smooth-L1 loss, backward, AdamW step, EMA update) on simulated 2-D barrel events
(`simulate.tracks.simulate_barrel2d`, 8 layers at 50-300 mm, 2 T, pT 0.5-5 GeV) with 5k to 100k hits per event
(n_particles = hits / 8), batch 1 and 8, reference encoder sizes (D = 32, 3 blocks, E = 32, Fourier features).
Reported: events/s (median of `--repeats` steps after one warm-up step), the peak memory torch allocated during one
step (`core.peak_memory`: the CUDA counter on a GPU, the CPU profiler's running sum of allocations on a CPU), the
hits packed per region and the hits beyond `max_hits` (subsampled and counted). A power law t = a N^b is fitted over
the sizes. On CUDA the step runs under bf16 autocast. The bounded-memory claim: the peak grows with the packed
region (capped), not with N^2; at 100k hits one block of whole-event attention logits would need 149 GiB.

    python bench/bench_jepa.py [--quick] [--repeats 3] [--out bench/results/jepa_pretrain.json]
"""

from __future__ import annotations
import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from _common import machine_info, power_laws_by_batch

from foundation_jets.core import autocast, get_device, peak_memory
from foundation_jets.metrics import metrics_to_json
from foundation_jets.simulate.tracks import TrackingConfig, simulate_barrel2d
from foundation_jets.tasks.jepa import JEPATask

HERE = Path(__file__).resolve().parent
SIZES = (5_000, 10_000, 20_000, 50_000, 100_000)
BATCHES = (1, 8)


def events(n_hits: int, batch: int, seed: int):
    "A batch of simulated 2-D barrel events with about n_hits hits each (8 layers, one hit per layer per track)."
    config = TrackingConfig(n_particles=(n_hits // 8, n_hits // 8), pt_range=(0.5, 5.0))
    return simulate_barrel2d(batch, seed=seed, config=config)


def measure(n_hits: int, batch: int, repeats: int, max_hits: int, device) -> dict:
    "Time and peak memory of one pretraining step on a batch of events of about n_hits hits."
    sets = events(n_hits, batch, seed=n_hits).to(device)
    torch.manual_seed(0)
    task = JEPATask({'frequencies': 6}, r_range=(50.0, 300.0), max_hits=max_hits).to(device)
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    generator = torch.Generator(device=device).manual_seed(0)
    info = {}

    def step():
        with autocast(device):
            out = task.jepa_step(sets, generator)
        optimizer.zero_grad()
        out['loss'].backward()
        optimizer.step()
        task.target_encoder.update(0)
        info.update(events=out['events'], skipped=out['skipped'], dropped=out['dropped_hits'])
        return out

    step()  # warm-up: allocates the optimiser state
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        step()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    _, peak = peak_memory(step, device)
    median = statistics.median(times)
    return {
        'hits_per_event': float(sets.counts.float().mean()),
        'batch': batch,
        'step_s': times,
        'step_median_s': median,
        'events_per_s': batch / median,
        'peak_mib': peak / 2**20,
        'events_used': info['events'],
        'events_skipped': info['skipped'],
        'hits_beyond_max_hits': info['dropped'],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='5k and 20k hits, batch 1 and 2, one repeat (CI)')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--max-hits', type=int, default=1024)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    ap.add_argument('--out', default=str(HERE / 'results' / 'jepa_pretrain.json'))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    sizes, batches, repeats = ((5_000, 20_000), (1, 2), 1) if args.quick else (SIZES, BATCHES, args.repeats)
    load_start = os.getloadavg()
    rows = []
    print(f"{'hits':>8s} {'batch':>5s} {'step s':>8s} {'events/s':>9s} {'peak MiB':>9s} {'beyond cap':>10s}")
    for batch in batches:
        for n in sizes:
            r = measure(n, batch, repeats, args.max_hits, device)
            rows.append(r)
            print(
                f"{r['hits_per_event']:8.0f} {batch:5d} {r['step_median_s']:8.3f} {r['events_per_s']:9.2f}"
                f" {r['peak_mib']:9.1f} {r['hits_beyond_max_hits']:10d}"
            )
    fits = power_laws_by_batch(rows, 'hits_per_event', ('step_median_s', 'peak_mib'))
    for batch in batches:
        print(
            f"batch {batch}: step time ~ N^{fits[f'batch{batch}']['step_median_s']['b']:.2f},"
            f" peak memory ~ N^{fits[f'batch{batch}']['peak_mib']['b']:.2f}"
        )
    largest = max(rows, key=lambda r: r['hits_per_event'])
    whole_event_gib = largest['hits_per_event'] ** 2 * 4 * 4 / 2**30
    print(f"whole-event attention logits, one block, {largest['hits_per_event']:.0f} hits: {whole_event_gib:.0f} GiB")
    result = {
        'machine': machine_info(load_start, device),
        'settings': {
            'quick': args.quick,
            'repeats': repeats,
            'max_hits': args.max_hits,
            'precision': 'bf16 autocast' if device.type == 'cuda' else 'fp32',
            'encoder': 'HitEncoder D=32, 3 blocks, 4 heads, d_ff 128, 6 Fourier frequencies; aggregator 2 blocks, E=32',
            'events': 'simulate_barrel2d: 8 layers 50-300 mm, 2 T, pT 0.5-5 GeV, n_particles = hits / 8',
        },
        'rows': rows,
        'power_law': fits,
        'whole_event_attention_gib': whole_event_gib,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metrics_to_json(result, out)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
