"""Throughput of the detector simulators `foundation_jets.simulate.lartpc` and `foundation_jets.simulate.tracks`.

Measures events per second, in one process (the generators are single-threaded numpy):
- lartpc: `simulate_event` (default config) and the same plus writing the PILArNet-M v2 HDF5 file;
- barrel2d: `simulate_barrel2d` (10 particles, 8 layers) and the same plus `write_h5_shard` of `compact_barrel2d`
  (as the CLI);
- solenoid3d: `simulate_tracking_event` + `trackml_tables` (50 particles, 10 TrackML barrel layers, 20 % noise),
  and the same plus writing the TrackML CSV files.
Also reports mean points (hits) per event and bytes per event on disk. Default run: 30 LArTPC, 500 barrel2d and
100 solenoid3d events (under a minute on 2 cores); `--full`: 5x more. Results go to
bench/results/simulate_detectors.json.

    python bench/bench_simulate_detectors.py [--full] [--out bench/results/simulate_detectors.json]
"""

from __future__ import annotations
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from foundation_jets.core import atomic_write_text
from foundation_jets.data.modules import write_h5_shard
from foundation_jets.simulate import lartpc, tracks

HERE = Path(__file__).resolve().parent


def timed(fn, repeat: int = 1):
    "Best wall time of `repeat` calls of fn() and its last result."
    best, out = float('inf'), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_lartpc(n: int, folder: Path) -> dict:
    cfg = lartpc.LArTPCConfig()
    t_gen, events = timed(lambda: [lartpc.simulate_event(np.random.default_rng([0, i]), cfg) for i in range(n)])
    path = folder / 'lartpc.h5'
    t_all, _ = timed(lambda: lartpc.write_lartpc(path, n, seed=0))
    pts = np.mean([len(e['point']) for e in events])
    return dict(
        simulator='lartpc',
        events=n,
        generate_events_per_s=n / t_gen,
        generate_and_write_events_per_s=n / t_all,
        elements_per_event=float(pts),
        bytes_per_event=path.stat().st_size / n,
    )


def bench_barrel2d(n: int, folder: Path) -> dict:
    cfg = tracks.TrackingConfig(sigma=0.05)
    t_gen, ps = timed(lambda: tracks.simulate_barrel2d(n, 0, cfg))
    path = folder / 'barrel2d.h5'
    t_all, _ = timed(lambda: write_h5_shard(path, tracks.compact_barrel2d(tracks.simulate_barrel2d(n, 0, cfg))))
    return dict(
        simulator='barrel2d',
        events=n,
        generate_events_per_s=n / t_gen,
        generate_and_write_events_per_s=n / t_all,
        elements_per_event=float(ps.counts.float().mean()),
        bytes_per_event=path.stat().st_size / n,
    )


def bench_solenoid3d(n: int, folder: Path) -> dict:
    cfg = tracks.TrackingConfig(detector='solenoid3d', n_particles=(50, 50), noise=0.2)
    t_gen, evs = timed(
        lambda: [
            tracks.trackml_tables(tracks.simulate_tracking_event(np.random.default_rng([0, i]), cfg), cfg)
            for i in range(n)
        ]
    )
    out = folder / 'solenoid3d'
    t_all, _ = timed(lambda: tracks.write_solenoid3d(out, n, 0, cfg))
    size = sum(f.stat().st_size for f in out.iterdir())
    return dict(
        simulator='solenoid3d',
        events=n,
        generate_events_per_s=n / t_gen,
        generate_and_write_events_per_s=n / t_all,
        elements_per_event=float(np.mean([len(e['hits']) for e in evs])),
        bytes_per_event=size / n,
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--full', action='store_true', help='5x more events')
    ap.add_argument('--out', default=str(HERE / 'results' / 'simulate_detectors.json'))
    a = ap.parse_args(argv)
    k = 5 if a.full else 1
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rows = [bench_lartpc(30 * k, d), bench_barrel2d(500 * k, d), bench_solenoid3d(100 * k, d)]
    print(
        f"{'simulator':<11} {'events':>7} {'gen ev/s':>10} {'gen+write ev/s':>15} "
        f"{'points/hits':>12} {'bytes/event':>12}"
    )
    for r in rows:
        print(
            f"{r['simulator']:<11} {r['events']:>7} {r['generate_events_per_s']:>10.1f} "
            f"{r['generate_and_write_events_per_s']:>15.1f} "
            f"{r['elements_per_event']:>12.0f} {r['bytes_per_event']:>12.0f}"
        )
    result = dict(
        benchmark='simulate_detectors',
        full=a.full,
        results=rows,
        machine=dict(
            python=sys.version.split()[0], numpy=np.__version__, platform=platform.platform(), cpus=os.cpu_count()
        ),
        targets=dict(lartpc_events_per_s=5.0),
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, json.dumps(result, indent=1) + '\n')
    print(f'wrote {a.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
