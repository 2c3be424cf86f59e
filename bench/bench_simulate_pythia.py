"""Throughput of the Pythia 8 + fastjet simulators (`foundation_jets.simulate.jets` / `.events`).

Measures
- jets/s of `simulate_jets` (generation, anti-kT R=0.8 clustering, matching, substructure) with 1 and 2
  worker processes, per worker, and the scaling ratio rate(2 workers) / rate(1 worker);
- events/s of `simulate_events` (generation, lepton isolation, R=0.4 jets, MET, filter) with 1 worker,
  for the background mixture and one signal.

Wall-clock time includes Pythia initialisation (once per chunk) and, for 2 workers, spawning the pool.
The machine's load average is recorded: other jobs on a shared box lower the numbers.
Default run: 120 top jets (MPI on) and 100 events per L1 sample, a few minutes on 2 cores; `--full`: 4x more;
`--quick`: 40 jets and 40 events.
Results go to bench/results/simulate_pythia.json.

    python bench/bench_simulate_pythia.py [--full] [--out bench/results/simulate_pythia.json]
"""

from __future__ import annotations
import argparse
import json
import os
import platform
import time
from pathlib import Path

from foundation_jets.core import atomic_write_text
from foundation_jets.simulate.events import simulate_events
from foundation_jets.simulate.jets import simulate_jets

HERE = Path(__file__).resolve().parent


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--full', action='store_true', help='4x more jets and events')
    ap.add_argument('--quick', action='store_true', help='a third of the jets and events (make bench on a CPU)')
    ap.add_argument('--out', default=str(HERE / 'results' / 'simulate_pythia.json'))
    a = ap.parse_args(argv)
    k = 4 if a.full else 1
    n_jets, n_events = (40, 40) if a.quick else (120 * k, 100 * k)
    load0 = os.getloadavg()
    rows = []
    for workers in (1, 2):
        dt = timed(
            lambda: simulate_jets('TTBar', n_jets, seed=1, workers=workers, chunk_size=n_jets // 4, progress=False)
        )
        rows.append(
            dict(
                what='jets TTBar (MPI on)',
                workers=workers,
                n=n_jets,
                seconds=dt,
                rate=n_jets / dt,
                rate_per_worker=n_jets / dt / workers,
            )
        )
    scaling = rows[1]['rate'] / rows[0]['rate']
    for proc in ('background', 'Ato4l'):
        dt = timed(lambda: simulate_events(proc, n_events, seed=1, workers=1, chunk_size=n_events, progress=False))
        rows.append(
            dict(
                what=f'L1 events {proc}',
                workers=1,
                n=n_events,
                seconds=dt,
                rate=n_events / dt,
                rate_per_worker=n_events / dt,
            )
        )
    print(f"{'what':26s} {'workers':>7s} {'n':>6s} {'s':>8s} {'per s':>8s} {'per s/worker':>13s}")
    for r in rows:
        print(
            f"{r['what']:26s} {r['workers']:7d} {r['n']:6d} {r['seconds']:8.1f} {r['rate']:8.2f} "
            f"{r['rate_per_worker']:13.2f}"
        )
    print(
        f'scaling 2 workers / 1 worker: {scaling:.2f} (ideal 2.0); '
        f'load average before {load0[0]:.1f}, after {os.getloadavg()[0]:.1f}'
    )
    res = dict(
        rows=rows,
        jets_scaling_2_over_1=scaling,
        cpu_count=os.cpu_count(),
        load_avg_before=load0,
        load_avg_after=os.getloadavg(),
        platform=platform.platform(),
        full=a.full,
        quick=a.quick,
        note='wall clock incl. Pythia init per chunk and pool start-up; shared machine, see load averages',
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, json.dumps(res, indent=1))
    print('wrote', a.out)


if __name__ == '__main__':
    main()
