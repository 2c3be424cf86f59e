"""Tracking-JEPA linear probe over seeds: pretrained encoders against the same networks at initialisation.

Measured: issue 15's done-when, "on simulated data, the JEPA-pretrained probe beats a random-init encoder on the
downstream task", with the spread over seeds that a single run hides (random initialisations alone spread by ~0.09
AUC on this probe). For each seed s = 0 .. n-1:
- a `JEPATask` (reference sizes: D = 32, 3 blocks, E = 32, 6 Fourier frequencies, wedge frame, VICReg weight 1,
  EMA momentum 0.999, AdamW 1e-3 with cosine decay) is built under `seed_everything(s)` and deep-copied: the copy is
  the random-init encoder, the original is pretrained through `tasks.core.fit` (batch 32, shuffled with seed s);
- both are probed with `tasks.jepa.linear_probe` on the same frozen context embeddings: logistic regression AUC of
  the high-pT label (a particle above 0.6 GeV with more than 3 context hits, the reference `ClassifyPt` protocol)
  and ridge R^2 of the leading particle's log pT.
Events (`simulate.tracks.simulate_barrel2d`, 8 layers at 50-300 mm, 2 T, vertices spread by 1 mm): downstream
events hold 10 soft tracks (pT 0.15-0.3 GeV) plus one hard track (1.2-1.8 GeV, the `overlay`); 4,000 events for the
probe's training and 2,000 for its test (seeds 31, 32; one context per event). Pretraining events (seed 11):
`--pretrain overlay` (default) draws them from that same distribution, without labels; `--pretrain soft` uses the
soft tracks only (the reference's toy, and what notebook 29b used up to session 6).

    python bench/jepa_probe.py [--seeds 5] [--steps 3000] [--pretrain overlay|soft] [--quick]
                               [--out bench/results/jepa_probe.json]
"""

from __future__ import annotations
import argparse
import copy
import math
import os
import time

import numpy as np
import torch
from _common import machine_info

from foundation_jets.core import seed_everything
from foundation_jets.data.modules import SetDataModule
from foundation_jets.metrics import metrics_to_json
from foundation_jets.simulate.tracks import TrackingConfig, simulate_barrel2d
from foundation_jets.tasks.core import fit
from foundation_jets.tasks.jepa import JEPATask, context_samples, linear_probe, region_embeddings

R_RANGE = (50.0, 300.0)  # mm, the barrel's first and last layer
SOFT = TrackingConfig(n_particles=(10, 10), pt_range=(0.15, 0.3), d0=1.0)
HARD = TrackingConfig(n_particles=(1, 1), pt_range=(1.2, 1.8), d0=1.0)


def probe(task: JEPATask, train, test) -> dict:
    "Linear probe of the task's frozen context embeddings."
    embed = [region_embeddings(task, s, device='cpu') for s in (train, test)]
    return linear_probe(embed[0], train, embed[1], test)


def spread(values) -> dict:
    "Mean, sample standard deviation, minimum and maximum."
    v = np.asarray(values, dtype=float)
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {'mean': float(v.mean()), 'std': std, 'min': float(v.min()), 'max': float(v.max())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', type=int, default=5)
    ap.add_argument('--steps', type=int, default=3000)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--pretrain', choices=('overlay', 'soft'), default='overlay')
    ap.add_argument('--pretrain-events', type=int, default=10_000)
    ap.add_argument('--probe-events', type=int, nargs=2, default=(4000, 2000), help='probe training and test events')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--quick', action='store_true', help='2 seeds, 60 steps, small sets: checks the script runs')
    ap.add_argument('--out', default='bench/results/jepa_probe.json')
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.pretrain_events, args.probe_events = 2, 60, 500, (600, 300)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    overlay = HARD if args.pretrain == 'overlay' else None
    train_sets = simulate_barrel2d(args.pretrain_events, seed=11, config=SOFT, overlay=overlay)
    val_sets = simulate_barrel2d(200, seed=12, config=SOFT, overlay=overlay)
    options = dict(half_width=math.pi / 8, r_range=R_RANGE, frame='wedge', r_scale=R_RANGE[1])
    generator = torch.Generator().manual_seed(0)
    samples = []
    for n, seed in zip(args.probe_events, (31, 32)):
        events = simulate_barrel2d(n, seed=seed, config=SOFT, overlay=HARD)
        samples.append(context_samples(events, generator=generator, **options))
    (down_train, report_train), (down_test, report_test) = samples
    print('probe training samples', report_train, '\nprobe test samples', report_test, flush=True)
    rows = []
    for seed in range(args.seeds):
        seed_everything(seed)
        task = JEPATask({'frequencies': 6}, r_range=R_RANGE, vicreg_weight=1.0, seed=seed)
        init = copy.deepcopy(task)
        data = SetDataModule(train_sets, val_sets, batch_size=args.batch, seed=seed)
        t0 = time.perf_counter()
        result = fit(task, data, steps=args.steps, val_checks=1, device='cpu', seed=seed)
        seconds = time.perf_counter() - t0
        last = {k[4:]: v for k, v in result.history[-1].items() if k.startswith('val/')}
        pre, rnd = probe(task, down_train, down_test), probe(init, down_train, down_test)
        row = {'seed': seed, 'train_seconds': seconds, 'pretrained': pre, 'random_init': rnd, 'last_validation': last}
        row['auc_margin'] = pre['auc'] - rnd['auc']
        row['r2_log_pt_margin'] = pre['r2_log_pt'] - rnd['r2_log_pt']
        rows.append(row)
        print(
            f"seed {seed}: AUC pretrained {pre['auc']:.3f} random init {rnd['auc']:.3f} ({row['auc_margin']:+.3f}); "
            f"R^2 log pT {pre['r2_log_pt']:.3f} vs {rnd['r2_log_pt']:.3f}; {seconds:.0f} s",
            flush=True,
        )
    summary = {
        'auc_pretrained': spread([r['pretrained']['auc'] for r in rows]),
        'auc_random_init': spread([r['random_init']['auc'] for r in rows]),
        'auc_margin': spread([r['auc_margin'] for r in rows]),
        'r2_log_pt_pretrained': spread([r['pretrained']['r2_log_pt'] for r in rows]),
        'r2_log_pt_random_init': spread([r['random_init']['r2_log_pt'] for r in rows]),
        'r2_log_pt_margin': spread([r['r2_log_pt_margin'] for r in rows]),
    }
    summary['seeds_won'] = sum(r['auc_margin'] > 0 for r in rows)
    summary['worst_pretrained_above_best_random'] = summary['auc_pretrained']['min'] > summary['auc_random_init']['max']
    print(f"\n{'':24}{'mean':>8}{'std':>8}{'min':>8}{'max':>8}")
    for key, s in summary.items():
        if isinstance(s, dict):
            print(f"{key:24}{s['mean']:8.3f}{s['std']:8.3f}{s['min']:8.3f}{s['max']:8.3f}")
    print(f"seeds where the pretrained probe wins: {summary['seeds_won']} of {len(rows)}")
    metrics_to_json(
        dict(
            config=vars(args),
            machine=machine_info(load_start),
            data=dict(probe_train=report_train, probe_test=report_test),
            rows=rows,
            summary=summary,
        ),
        args.out,
    )


if __name__ == '__main__':
    main()
