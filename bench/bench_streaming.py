"""Streaming throughput and memory of `foundation_jets.data.modules.StreamingSetDataset`.

Measures
- jets/s streaming JetClass-schema ROOT files (`foundation_jets.data.jets.read_jetclass`) and HDF5 set shards
  (`read_h5_shard`), with 1 and 2 DataLoader workers, shown side by side with their ratios;
- peak RSS of a fresh process streaming the HDF5 and ROOT data at 1x and 10x dataset size (the same files listed
  10 times), to show that memory stays flat.

The jets are the 500 real JetClass jets of `shared_data_dir()/jetclass_500`, each copy rotated by a random
azimuth so that copies differ. Default run: 4 files x 5,000 jets and the memory check on the HDF5 path (about a
minute on an idle 2-core box). `--full`: 8 files x 25,000 jets and the memory check on both paths. 1x = all files,
10x = the same files listed 10 times; 1x must exceed the shuffle buffer so that both runs reach the steady state
(buffer + chunk + batch held). Results go to bench/results/streaming.json (or --out).

    python bench/bench_streaming.py [--full] [--out bench/results/streaming.json]
"""

from __future__ import annotations
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from foundation_jets.core import atomic_write_text, collate_sets, shared_data_dir
from foundation_jets.data.modules import StreamingSetDataset, read_h5_shard, write_h5_shard

HERE = Path(__file__).resolve().parent
BATCH, BUFFER, CHUNK = 256, 10_000, 2_000


def make_jets(n_jets: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    "n_jets copies of the real sample, each rotated by a random azimuth: (n, 128, 4) p4, (n, 128) mask, labels."
    d = shared_data_dir() / 'jetclass_500'
    v = np.load(d / 'pf_vectors.npy').transpose(0, 2, 1).astype(np.float64)
    m = np.load(d / 'pf_mask.npy')[:, 0] > 0
    lab = np.load(d / 'labels.npy').argmax(1)
    rng = np.random.default_rng(seed)
    idx = np.arange(n_jets) % len(v)
    a = rng.uniform(-np.pi, np.pi, n_jets)[:, None]
    p = v[idx].copy()
    p[..., 0], p[..., 1] = (
        np.cos(a) * v[idx, :, 0] - np.sin(a) * v[idx, :, 1],
        np.sin(a) * v[idx, :, 0] + np.cos(a) * v[idx, :, 1],
    )
    return p.astype(np.float32), m[idx], lab[idx]


def write_root(path: Path, p4, mask, labels):
    "A JetClass-schema ROOT file: the package writer if present, else a minimal uproot writer (same branches)."
    names = ('part_px', 'part_py', 'part_pz', 'part_energy')
    try:
        from foundation_jets.data.jets import write_jetclass_root
    except ImportError:
        write_jetclass_root = None
    if write_jetclass_root is not None:
        return write_jetclass_root(
            path, {b: [p4[i, mask[i], k] for i in range(len(p4))] for k, b in enumerate(names)}, labels=labels
        )
    import awkward as ak
    import uproot

    counts = mask.sum(1)
    with uproot.recreate(path) as f:
        f['tree'] = {'part': ak.zip({b[5:]: ak.unflatten(p4[..., k][mask], counts) for k, b in enumerate(names)})}
    return path


def root_reader():
    try:
        from foundation_jets.data.jets import read_jetclass

        return partial(read_jetclass, chunk_size=CHUNK, jet_features=())
    except ImportError:
        return _uproot_chunks


def _uproot_chunks(path):
    import awkward as ak
    import uproot
    from foundation_jets.core import ParticleSet

    names = ('part_px', 'part_py', 'part_pz', 'part_energy')
    for arrs in uproot.open(path)['tree'].iterate(list(names), step_size=CHUNK, library='ak'):
        x = np.stack([ak.to_numpy(ak.fill_none(ak.pad_none(arrs[b], 128, clip=True), 0)) for b in names], -1).astype(
            np.float32
        )
        n = ak.to_numpy(ak.num(arrs[names[0]]))
        yield ParticleSet(torch.from_numpy(x), torch.from_numpy(np.arange(128) < n[:, None]), feature_names=names)


def make_data(folder: Path, n_files: int, jets_per_file: int) -> dict:
    "Write the ROOT files and the matching HDF5 shards; returns {'root': [...], 'h5': [...]}."
    files = {'root': [], 'h5': []}
    for i in range(n_files):
        p4, mask, lab = make_jets(jets_per_file, seed=i)
        r = write_root(folder / f'jets_{i:03d}.root', p4, mask, lab)
        sets = collate_sets(list(root_reader()(r)))
        files['root'].append(str(r))
        files['h5'].append(str(write_h5_shard(folder / f'jets_{i:03d}.h5', sets)))
    return files


def reader_for(fmt: str):
    return root_reader() if fmt == 'root' else partial(read_h5_shard, chunk_size=CHUNK)


def stream(files, fmt: str, workers: int) -> tuple[int, float]:
    "One epoch through a DataLoader; returns (jets, seconds), worker start-up included."
    ds = StreamingSetDataset(files, reader_for(fmt), shuffle_buffer=BUFFER, seed=0, batch_size=BATCH)
    dl = DataLoader(ds, batch_size=None, num_workers=workers)
    t0 = time.perf_counter()
    n = 0
    for b in dl:
        n += len(b)
    return n, time.perf_counter() - t0


def vm_hwm_mib() -> float:
    "Peak resident set of this process image (VmHWM; unlike ru_maxrss it is not inherited across fork+exec)."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_rss(fmt: str, copies: int, files: list[str]) -> dict:
    "Run in a fresh process: stream `copies` x the files with no workers, report jets and peak RSS (MiB)."
    reader = reader_for(fmt)
    base = vm_hwm_mib()
    ds = StreamingSetDataset(files * copies, reader, shuffle_buffer=BUFFER, seed=0, batch_size=BATCH)
    t0 = time.perf_counter()
    n = sum(len(b) for b in ds)
    peak = vm_hwm_mib()
    return {
        'jets': n,
        'peak_rss_mib': peak,
        'rss_after_imports_mib': base,
        'streaming_mib': peak - base,
        'max_examples_held': ds.max_held,
        'jets_per_s': n / (time.perf_counter() - t0),
    }


def run_child(fmt: str, copies: int, files: list[str]) -> dict:
    cmd = [sys.executable, __file__, '--child', fmt, str(copies), json.dumps(files)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--full', action='store_true', help='8 files x 25,000 jets instead of 4 x 5,000')
    ap.add_argument('--out', default=str(HERE / 'results' / 'streaming.json'), help='JSON results file')
    ap.add_argument('--child', nargs=3, metavar=('FORMAT', 'COPIES', 'FILES_JSON'), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child_rss(a.child[0], int(a.child[1]), json.loads(a.child[2]))))
        return 0
    n_files, per_file = (8, 25_000) if a.full else (4, 5_000)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = make_data(Path(tmp), n_files, per_file)
        t_make = time.perf_counter() - t0
        sizes = {k: sum(os.path.getsize(f) for f in v) for k, v in files.items()}
        thr = {}
        t_make0 = time.perf_counter()
        for fmt in ('root', 'h5'):
            stream(files[fmt][:1], fmt, 0)  # warm the page cache and imports
            for w in (1, 2):
                n, s = stream(files[fmt], fmt, w)
                assert n == n_files * per_file, (fmt, w, n)
                thr[f'{fmt}_{w}w'] = n / s
        t_rss0 = time.perf_counter()
        t0 = time.perf_counter()
        base = files  # 1x must exceed the shuffle buffer, or 1x never reaches the steady state
        rss_fmts = ('h5', 'root') if a.full else ('h5',)  # the ROOT memory check is slow: --full only
        rss = {f'{fmt}_{c}x': run_child(fmt, c, base[fmt]) for fmt in rss_fmts for c in (1, 10)}
        t_rss = time.perf_counter() - t0
    res = {
        'config': {
            'files': n_files,
            'jets_per_file': per_file,
            'jets': n_files * per_file,
            'batch_size': BATCH,
            'shuffle_buffer': BUFFER,
            'chunk_size': CHUNK,
            'full': a.full,
            'bytes': sizes,
        },
        'machine': {
            'cpus': os.cpu_count(),
            'python': platform.python_version(),
            'torch': torch.__version__,
            'platform': platform.platform(),
        },
        'jets_per_s': thr,
        'ratios': {
            'h5_over_root_1w': thr['h5_1w'] / thr['root_1w'],
            'h5_over_root_2w': thr['h5_2w'] / thr['root_2w'],
            'root_2w_over_1w': thr['root_2w'] / thr['root_1w'],
            'h5_2w_over_1w': thr['h5_2w'] / thr['h5_1w'],
        },
        'peak_rss': rss,
        'rss_10x_over_1x': {
            fmt: rss[f'{fmt}_10x']['peak_rss_mib'] / rss[f'{fmt}_1x']['peak_rss_mib'] for fmt in rss_fmts
        },
        'seconds': {
            'make_data': t_make,
            'throughput': t_rss0 - t_make0,
            'rss_children': t_rss,
            'total': time.perf_counter() - t_start,
        },
    }
    print(
        f"StreamingSetDataset: {n_files} files x {per_file} jets, batch {BATCH}, shuffle buffer {BUFFER}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'source':<8}{'1 worker':>12}{'2 workers':>12}{'2w / 1w':>10}   (jets/s)")
    for fmt in ('root', 'h5'):
        print(
            f"{fmt:<8}{thr[fmt + '_1w']:>12,.0f}{thr[fmt + '_2w']:>12,.0f}{thr[fmt + '_2w'] / thr[fmt + '_1w']:>10.2f}"
        )
    print(f"{'h5/root':<8}{res['ratios']['h5_over_root_1w']:>12.2f}{res['ratios']['h5_over_root_2w']:>12.2f}")
    print("\npeak RSS of a fresh process streaming the data (no workers), MiB")
    print(
        f"{'source':<8}{'imports':>9}{'1x jets':>10}{'1x peak':>9}{'10x jets':>10}{'10x peak':>10}{'10x/1x':>8}"
        "   streaming part 1x -> 10x (sets held)"
    )
    for fmt in rss_fmts:
        r1, r10 = rss[f'{fmt}_1x'], rss[f'{fmt}_10x']
        print(
            f"{fmt:<8}{r1['rss_after_imports_mib']:>9.0f}{r1['jets']:>10,}{r1['peak_rss_mib']:>9.0f}"
            f"{r10['jets']:>10,}{r10['peak_rss_mib']:>10.0f}{res['rss_10x_over_1x'][fmt]:>8.2f}"
            f"   {r1['streaming_mib']:.0f} -> {r10['streaming_mib']:.0f} MiB"
            f" ({r1['max_examples_held']:,} -> {r10['max_examples_held']:,})"
        )
    sec = res['seconds']
    print(
        f"\n(data {sec['make_data']:.0f} s, throughput {sec['throughput']:.0f} s, "
        f"RSS children {sec['rss_children']:.0f} s; total {sec['total']:.0f} s) -> {a.out}"
    )
    atomic_write_text(a.out, json.dumps(res, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
