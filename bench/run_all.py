"""`make bench`: run every benchmark, stamp each result with its provenance, print one summary table.

Each `bench/bench_*.py` runs in its own process (its own output streams through), in CPU-sized modes on a CPU
(`--quick` or the small default; the whole suite stays under 15 minutes on a 2-core box) and in full modes on CUDA.
CPU-sized results are written as `bench/results/<name>_quick.json`, full ones as `<name>.json` (so a quick run
never overwrites a recorded full one). Every result JSON gets a `provenance` block: device, date (UTC), library
versions, load average at start and end, the command and its wall time. `summary[_quick].json` holds the summary rows:
- generation speed ratio (KV cache over full recomputation, the reference's way);
- tokenization jets/s (ours, and the ratio over the reference-style quantizer);
- ParT training step time against weaver-core (same weights, one run);
- the grouping scaling exponent b of t = a N^b (goal b <= 1.2);
- data throughput: the loader's margin over each model's consumption (goal >= 5x), and the streaming rate;
- simulation jets/s (Pythia 8 + fastjet) and LArTPC events/s;
- on CUDA, the MFU of GPT, ParT and MAE training in bf16.

    python bench/run_all.py [--only NAME ...] [--skip NAME ...] [--full]
"""

from __future__ import annotations
import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / 'results'
PACKAGES = ('foundation_jets', 'torch', 'lightning', 'numpy', 'h5py', 'pythia8mc', 'fastjet', 'weaver-core')

# name: (script, CPU arguments, CUDA arguments); each writes bench/results/<name>.json
SUITE = {
    'simulate_pythia': ('bench_simulate_pythia.py', ['--quick'], []),
    'simulate_detectors': ('bench_simulate_detectors.py', [], ['--full']),
    'tokenize': ('bench_tokenize.py', [], ['--full']),
    'generation': ('bench_generation.py', ['--batch', '32', '--tokens', '64'], ['--batch', '256', '--tokens', '128']),
    'part': ('bench_part.py', ['--quick'], []),
    'points': ('bench_points.py', ['--quick'], []),
    'streaming': ('bench_streaming.py', [], ['--full']),
    'throughput': ('bench_throughput.py', [], ['--steps', '10']),
    'mae_pretrain': ('bench_mae.py', ['--quick'], []),
    'jepa_pretrain': ('bench_jepa.py', ['--quick'], []),
}


def versions() -> dict:
    "Installed versions of the libraries the numbers depend on."
    out = {'python': sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def device_record() -> dict:
    "The device the suite measures on."
    if torch.cuda.is_available():
        return {'device': 'cuda', 'device_name': torch.cuda.get_device_name(0), 'cuda': torch.version.cuda}
    return {'device': 'cpu', 'device_name': None, 'cpus': os.cpu_count()}


def run_one(name: str, full: bool) -> dict:
    "Run one benchmark script; stamp its JSON with the provenance; return the run record."
    script, cpu_args, cuda_args = SUITE[name]
    full = full or torch.cuda.is_available()
    out = result_path(name, full)
    args = cuda_args if full else cpu_args
    cmd = [sys.executable, str(HERE / script), *args, '--out', str(out)]
    print(f'\n== {name}: {" ".join(cmd[1:])}', flush=True)
    load0, t0 = os.getloadavg(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=HERE.parent)
    wall = time.perf_counter() - t0
    record = {
        'name': name,
        'command': ' '.join([Path(cmd[0]).name, *cmd[1:]]),
        'returncode': proc.returncode,
        'wall_s': round(wall, 1),
        'date_utc': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'),
        'load_average_start': list(load0),
        'load_average_end': list(os.getloadavg()),
        **device_record(),
        'versions': versions(),
    }
    if proc.returncode == 0 and out.exists():
        result = json.loads(out.read_text())
        result['provenance'] = record
        tmp = out.with_suffix('.json.tmp')
        tmp.write_text(json.dumps(result, indent=1) + '\n')
        tmp.replace(out)
    return record


def result_path(name: str, full: bool) -> Path:
    "The result file of a benchmark: `<name>.json` for full runs, `<name>_quick.json` for the CPU-sized modes."
    return RESULTS / f"{name}{'' if full else '_quick'}.json"


def _get_mode(path: str, key: str, full: bool = False):
    "A value from a result file by a dotted key (None if the file or the key is missing)."
    p = result_path(path, full)
    if not p.exists():
        return None
    v = json.loads(p.read_text())
    for k in key.split('.'):
        if isinstance(v, list) and k.isdigit() and int(k) < len(v):
            v = v[int(k)]
        elif isinstance(v, dict) and k in v:
            v = v[k]
        else:
            return None
    return v


def _fmt(v, spec: str, unit: str = '') -> str:
    return 'n/a' if v is None else f'{v:{spec}}{unit}'


def summary_rows(full: bool = False) -> list:
    "The summary table: (what, value, reference or goal) per row, read from the result files of one mode."
    _get = partial(_get_mode, full=full)
    dev = 'cuda' if isinstance(_get('tokenize', 'cuda'), dict) else 'cpu'
    mins = _get('throughput', 'pipelines') or {}
    ratios = {k: v['ratio'] for k, v in mins.items()}
    worst = min(ratios, key=ratios.get) if ratios else None
    rows = [
        (
            'generation speed ratio (KV cache / full recompute)',
            _fmt(_get('generation', 'speedup'), '.1f', 'x'),
            f"{_fmt(_get('generation', 'kv_cache_jets_per_s'), ',.1f')} jets/s, reference path "
            f"{_fmt(_get('generation', 'full_recompute_jets_per_s'), ',.1f')} jets/s",
        ),
        (
            f'tokenization jets/s ({dev}, simulated jets)',
            _fmt(_get('tokenize', f'{dev}.simulated.ours_jets_per_s'), ',.0f'),
            f"{_fmt(_get('tokenize', f'{dev}.simulated.speedup'), '.1f', 'x')} the reference-style quantizer",
        ),
        (
            'ParT training step, ours / weaver-core',
            _fmt(_get('part', 'cpu.training.ours.seconds_per_step'), '.3f', ' s'),
            f"weaver {_fmt(_get('part', 'cpu.training.weaver.seconds_per_step'), '.3f', ' s')}, "
            f"speed-up {_fmt(_get('part', 'cpu.training.speedup'), '.2f', 'x')}",
        ),
        (
            'grouping scaling exponent b (t ~ N^b, batch 1)',
            _fmt(_get('points', 'power_law.batch1.group_events_s.b'), '.2f'),
            'goal b <= 1.2',
        ),
        (
            'data throughput: loader / model, worst pipeline',
            _fmt(ratios.get(worst), ',.0f', 'x') + (f' ({worst})' if worst else ''),
            'goal >= 5x for every model',
        ),
        (
            'streaming HDF5 shards, 2 workers',
            _fmt(_get('streaming', 'jets_per_s.h5_2w'), ',.0f', ' jets/s'),
            f"ROOT {_fmt(_get('streaming', 'jets_per_s.root_2w'), ',.0f', ' jets/s')}",
        ),
        (
            'simulation (Pythia 8 + fastjet), tt jets/s, 1 worker',
            _fmt(_get('simulate_pythia', 'rows.0.rate'), '.1f'),
            f"2 workers {_fmt(_get('simulate_pythia', 'rows.1.rate'), '.1f')}",
        ),
        (
            'simulation (LArTPC), events/s',
            _fmt(_get('simulate_detectors', 'results.0.generate_events_per_s'), '.1f'),
            'goal >= 5',
        ),
    ]
    for name in ('gpt', 'part', 'mae'):
        mfu = (mins.get(name) or {}).get('model', {}).get('mfu')
        if mfu is not None:
            rows.append((f'MFU, {name} training (bf16)', f'{mfu:.1%}', 'goal >= 40 % (GPT, ParT)'))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', nargs='*', choices=sorted(SUITE), help='run these benchmarks only')
    ap.add_argument('--skip', nargs='*', default=[], choices=sorted(SUITE), help='leave these out')
    ap.add_argument('--full', action='store_true', help='the full (CUDA) modes, also on a CPU')
    ap.add_argument('--summary-only', action='store_true', help='print the summary of the existing results')
    ap.add_argument('--results', default=None, help='folder of the result files (default: bench/results)')
    a = ap.parse_args(argv)
    global RESULTS
    RESULTS = Path(a.results) if a.results else HERE / 'results'
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs = []
    if not a.summary_only:
        for name in a.only or SUITE:
            if name not in a.skip:
                runs.append(run_one(name, a.full))
    total = time.perf_counter() - t0
    full = a.full or torch.cuda.is_available()
    rows = summary_rows(full)
    width = max(len(r[0]) for r in rows)
    print(f"\nfoundation_jets benchmarks on {device_record()['device_name'] or 'CPU'} ({total / 60:.1f} min)")
    for what, value, note in rows:
        print(f'  {what:<{width}}  {value:>16}   {note}')
    for r in runs:
        print(f"  {r['name']:<20} {r['wall_s']:>7.1f} s  rc {r['returncode']}")
    summary = {
        'date_utc': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'),
        **device_record(),
        'versions': versions(),
        'load_average_end': list(os.getloadavg()),
        'total_s': round(total, 1),
        'runs': runs,
        'rows': [dict(what=w, value=v, note=n) for w, v, n in rows],
    }
    if not a.summary_only:
        result_path('summary', full).write_text(json.dumps(summary, indent=1) + '\n')
    failed = [r['name'] for r in runs if r['returncode'] != 0]
    if failed:
        print(f'failed: {failed}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
