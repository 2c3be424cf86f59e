"""Jet pretraining that pays? NTP, MPM (token and feature targets) and JEPA on one `JetBackbone`, fine-tuned and
frozen at 100 and 1,000 labelled top-vs-QCD jets, against the same backbone from scratch, a particle-flow network,
ParT from scratch, ParT pretrained supervised and a physics BDT (`foundation_jets.tasks.jetpretrain`).

Three stages, so that the two cores of a small machine can run shards side by side:

    # 1. pretrain (one or more objectives per process); backbones go to <cache>/pretrain/backbones/<objective>.pt
    python bench/pretraining_small_n.py pretrain --objectives ntp mpm_tokens
    python bench/pretraining_small_n.py pretrain --objectives mpm_features jepa
    # 2. fine-tune / freeze every backbone on the small-N splits (shards by objective), simulated and real jets
    python bench/pretraining_small_n.py finetune --objectives ntp mpm_tokens --out <cache>/pretrain/rows_a.json
    python bench/pretraining_small_n.py finetune --objectives mpm_features jepa --no-scratch --out ...rows_b.json
    # 3. merge with the supervised baselines of bench/part_small_n.py run on the same splits and seeds:
    python bench/part_small_n.py --seeds 0 1 2 --sizes 100 1000 --taggers part_scratch part_pretrained pfn bdt \
        --out <cache>/pretrain/baselines_small_n.json
    python bench/pretraining_small_n.py merge <cache>/pretrain/rows_*.json \
        --baselines <cache>/pretrain/baselines_small_n.json

Data (simulated by the package, cached outside the repository, see bench/part_small_n.py for the commands):
- the labelled top-vs-QCD pool (25,000 jets) and the fixed 3,000 test jets, split exactly as bench/part_small_n.py;
- pretraining: the 20,000 ten-class jets of <cache>/jetclass10 plus the 25,000 pool jets, labels dropped (45,000
  jets; the test jets are never seen);
- token targets: the VQ tokenizer of a `fj demo` run (<cache>/demo/tokenizer.pt, 512 codes);
- real: the 500 JetClass jets of shared/data, top vs QCD, half train (N = 40) and half test, as bench/part_small_n.py.

Output: bench/results/pretraining_small_n.json (config, seeds, CPU hours, one record per (dataset, model, regime,
N, seed) with `auc` and `rej30`, tables of mean ± standard error, the verdict of issue 16's criterion) and
bench/results/pretraining_small_n.png (AUC against N).
"""

from __future__ import annotations
import argparse
import json
import os
import re
import time
from pathlib import Path

import torch

from _common import machine_info
from foundation_jets.core import ParticleSet, collate_sets, seed_everything
from foundation_jets.data.features import part_spec
from foundation_jets.data.jets import JETCLASS_LABELS, load_jetclass, load_jetclass_npy
from foundation_jets.metrics import metrics_to_json
from foundation_jets.models.heads import load_pretrained, save_pretrained
from foundation_jets.models.jets import JetBackbone
from foundation_jets.plots import plot_auc_vs_n
from foundation_jets.tasks.jetpretrain import (
    OBJECTIVES,
    REGIMES,
    backbone_small_n,
    embedding_spread,
    jet_pretraining_sets,
    pretrain_jet_backbone,
    pretraining_verdict,
    seed_summary_table,
)

HERE = Path(__file__).resolve().parent
BACKBONE = dict(dim=64, num_heads=4, num_layers=4, pair_bias=False)
TOP, QCD = JETCLASS_LABELS.index('Tbqq'), JETCLASS_LABELS.index('QCD')
PREFIXES = ('HToBB', 'HToCC', 'HToGG', 'HToWW4Q', 'HToWW2Q1L', 'TTBar', 'TTBarLep', 'WToQQ', 'ZToQQ', 'ZJetsToNuNu')
BRANCHES = ('part_px', 'part_py', 'part_pz', 'part_energy')
OPTIONS = {'ntp': {}, 'mpm_tokens': {}, 'mpm_features': {}, 'jepa': dict(vicreg_weight=1.0)}


def read(paths: list, max_particles: int) -> ParticleSet:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: missing; make the simulated jets first (see bench/part_small_n.py)")
    return collate_sets([load_jetclass(p, max_particles=max_particles, particle_features=BRANCHES) for p in paths])


def top_vs_qcd(cache: Path, max_particles: int, tokenizer) -> tuple:
    "(pool, test) exactly as bench/part_small_n.py: 1,500 test jets per class from one fixed permutation."
    raw = read([cache / 'topqcd' / f'{p}_001.root' for p in ('TTBar', 'ZJetsToNuNu')], max_particles)
    sets = jet_pretraining_sets(raw, 'kin', tokenizer)
    sets.labels = (raw.labels == TOP).long()
    perm = torch.randperm(len(sets), generator=torch.Generator().manual_seed(0))
    by_class = [perm[sets.labels[perm] == c] for c in (0, 1)]
    test_idx = torch.cat([b[:1500] for b in by_class])
    pool_idx = torch.cat([b[1500:] for b in by_class])
    return sets[pool_idx], sets[test_idx]


def real_top_vs_qcd() -> tuple:
    "(train, test) of the shared real sample as bench/part_small_n.py: top vs QCD, a random half each."
    real = jet_pretraining_sets(load_jetclass_npy(), 'kin')
    two = real[(real.labels == TOP) | (real.labels == QCD)]
    two.labels = (two.labels == TOP).long()
    order = torch.randperm(len(two), generator=torch.Generator().manual_seed(0))
    n_test = len(two) // 2
    return two[order[n_test:]], two[order[:n_test]]


def pretrain(a, cache: Path, out_dir: Path):
    tokenizer = load_pretrained(cache / 'demo' / 'tokenizer.pt')
    t0 = time.perf_counter()
    pool, _ = top_vs_qcd(cache, a.max_particles, tokenizer)
    extra = jet_pretraining_sets(
        read([cache / 'jetclass10' / f'{p}_002.root' for p in PREFIXES], a.max_particles), 'kin', tokenizer
    )
    sets = collate_sets([pool, extra])
    sets.labels = None
    order = torch.randperm(len(sets), generator=torch.Generator().manual_seed(3))
    val, train = sets[order[:1000]], sets[order[1000:]]
    print(f'pretraining jets: {len(train)} (+{len(val)} validation), prepared in {time.perf_counter() - t0:.0f} s')
    for objective in a.objectives:
        task, log = pretrain_jet_backbone(
            objective,
            train,
            BACKBONE,
            steps=a.steps,
            batch_size=a.batch_size,
            lr=a.lr,
            seed=0,
            val=val,
            val_checks=4,
            num_codes=tokenizer.num_codes,
            **OPTIONS[objective],
        )
        log['embedding_spread_val'] = embedding_spread(task.backbone, val)
        log['threads'] = torch.get_num_threads()
        log['cpu_hours'] = log['seconds'] * log['threads'] / 3600
        path = save_pretrained(task.backbone, out_dir / f'{objective}.pt', part_spec('kin'), meta={'pretraining': log})
        print(
            f"{objective}: {log['steps']} steps, {log['seconds']:.0f} s, loss {log['train_loss_first']:.3f} -> "
            f"{log['train_loss_last']:.3f}, spread {log['embedding_spread_val']:.3f} -> {path}"
        )


def finetune(a, cache: Path, out_dir: Path):
    pool, test = top_vs_qcd(cache, a.max_particles, None)
    backbones = {o: load_pretrained(out_dir / f'{o}.pt') for o in a.objectives}
    logs = {o: b.meta.get('pretraining', {}) for o, b in backbones.items()}
    scratch = None if a.no_scratch else JetBackbone(input_dim=pool.num_features, **BACKBONE)
    options = dict(scratch=scratch, verbose=True, epochs=a.epochs, min_steps=a.min_steps)
    options |= dict(regimes=a.regimes, scratch_regimes=a.scratch_regimes)
    real = real_top_vs_qcd() if 'real' in a.datasets else None
    t0, rows = time.perf_counter(), []
    for seed in a.seeds:  # the JSON is rewritten after every seed: an interrupted run keeps its finished seeds
        if 'simulated' in a.datasets:
            new = backbone_small_n(pool, test, backbones, a.sizes, seeds=(seed,), **options)
            rows += [r | {'dataset': 'simulated_top_vs_qcd'} for r in new]
        if real is not None:
            new = backbone_small_n(*real, backbones, (40,), seeds=(seed,), **options)
            rows += [r | {'dataset': 'real_jetclass_top_vs_qcd'} for r in new]
        result = {'rows': rows, 'pretraining': logs, 'seconds': time.perf_counter() - t0}
        result |= {'threads': torch.get_num_threads(), 'seeds_done': a.seeds[: a.seeds.index(seed) + 1]}
        metrics_to_json(result, a.out, allow_nan=True)
        print(f'wrote {a.out} (seeds {result["seeds_done"]})', flush=True)


def baseline_rows(path: Path) -> list:
    "Rows of a bench/part_small_n.py run, relabelled as (dataset, model, regime) records."
    data = json.loads(Path(path).read_text())
    regime = {'part_pretrained': 'supervised_finetune'}
    out = []
    datasets = (('simulated_top_vs_qcd', 'simulated_top_vs_qcd'), ('real_top_vs_qcd', 'real_jetclass_top_vs_qcd'))
    for key, dataset in datasets:
        for r in data[key]:
            out.append(r | {'dataset': dataset, 'model': r['tagger'], 'regime': regime.get(r['tagger'], 'scratch')})
    return out, data


def log_rows(path: Path, dataset: str = 'simulated_top_vs_qcd') -> list:
    "Rows recovered from the printed lines of an interrupted finetune run: AUC only (no rejection, no steps)."
    pattern = re.compile(r'^\s*(\S+) N=(\d+)\s+seed (\d+): AUC ([0-9.]+)\s+\((\d+) s\)')
    rows = []
    for line in Path(path).read_text().splitlines():
        m = pattern.match(line)
        if m:
            tagger, n, seed, auc, seconds = m.groups()
            model, regime = tagger.rsplit('_', 1)
            rows.append(
                dict(
                    tagger=tagger,
                    model=model,
                    regime=regime,
                    n_train=int(n),
                    seed=int(seed),
                    auc=float(auc),
                    rej30=float('nan'),
                    steps=float('nan'),
                    seconds=float(seconds),
                    dataset=dataset,
                    source=f'log {Path(path).name}',
                )
            )
    return rows


def merge(a, out_dir: Path):
    shards = [json.loads(Path(p).read_text()) for p in a.shards]
    rows = [r for s in shards for r in s['rows']]
    for path in a.log_rows:
        rows += log_rows(path)
    pre = {o: load_pretrained(out_dir / f'{o}.pt').meta['pretraining'] for o in OBJECTIVES}
    base, base_data = baseline_rows(a.baselines)
    rows += base
    keys = ('dataset', 'model', 'regime', 'tagger', 'n_train', 'seed', 'auc', 'rej30', 'steps', 'seconds')
    records = [{k: r[k] for k in keys} | {'source': r.get('source', 'json')} for r in rows]
    tables, verdicts = {}, {}
    pretrained = [f'{o}_{g}' for o in OBJECTIVES for g in REGIMES]
    scratch = ['backbone_scratch', 'backbone_linear', 'pfn', 'part_scratch']
    for dataset in sorted({r['dataset'] for r in records}):
        sub = [r for r in records if r['dataset'] == dataset]
        for metric in ('auc', 'rej30'):
            tables[f'{dataset}_{metric}'] = seed_summary_table(sub, metric)
        sizes = sorted({r['n_train'] for r in sub})
        verdicts[dataset] = {n: pretraining_verdict(sub, n, pretrained, scratch) for n in sizes}
    finetune_cpu_h = sum(s['seconds'] * s['threads'] for s in shards) / 3600
    finetune_cpu_h += sum(r['seconds'] for r in rows if r.get('source', 'json').startswith('log')) / 3600
    pretrain_cpu_h = sum(v.get('cpu_hours', 0.0) for v in pre.values())
    out = {
        'machine': machine_info(os.getloadavg()),
        'config': {
            'backbone': BACKBONE,
            'objectives': sorted(pre),
            'pretraining': pre,
            'sizes': sorted({r['n_train'] for r in records if r['dataset'] == 'simulated_top_vs_qcd'}),
            'seeds': sorted({r['seed'] for r in records}),
            'baselines': {'source': 'bench/part_small_n.py', 'config': base_data['config']},
            'baseline_pretraining': base_data.get('pretraining'),
        },
        'cpu_hours': {
            'pretraining': pretrain_cpu_h,
            'small_n': finetune_cpu_h,
            'baselines': base_data['seconds'] * base_data['machine']['threads'] / 3600,
        },
        'records': records,
        'tables': tables,
        'verdict': verdicts,
    }
    metrics_to_json(out, a.out, allow_nan=True)
    for name, table in tables.items():
        print(f'\n{name}\n{table}')
    print(json.dumps(verdicts, indent=1))
    plot(records, Path(a.out).with_suffix('.png'))
    print(f'wrote {a.out}')


def plot(records: list, path: Path):
    import matplotlib

    matplotlib.use('Agg')
    sim = [r for r in records if r['dataset'] == 'simulated_top_vs_qcd']
    pretrained = tuple(f'_{regime}' for regime in REGIMES)
    taggers = list(dict.fromkeys(r['tagger'] for r in sim))
    styles = {t: '-' if t.endswith(pretrained) and not t.startswith('backbone') else '--' for t in taggers}
    palette = matplotlib.colormaps['tab20'].colors
    colours = {t: palette[i % len(palette)] for i, t in enumerate(taggers)}
    fig = plot_auc_vs_n(sim, colors=colours, linestyles=styles)
    fig.axes[0].set_title('top vs QCD, 3,000 test jets')
    fig.axes[0].legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110)
    print(f'wrote {path}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('stage', choices=('pretrain', 'finetune', 'merge'))
    ap.add_argument('shards', nargs='*', help='merge: the JSON files of the finetune stage')
    ap.add_argument('--cache', default=os.path.expanduser('~/.cache/foundation_jets/sim'))
    ap.add_argument(
        '--backbones', default=None, help='pretrained backbones folder (default <cache>/pretrain/backbones)'
    )
    ap.add_argument('--objectives', nargs='+', default=list(OBJECTIVES), choices=OBJECTIVES)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--max-particles', type=int, default=64)
    ap.add_argument('--steps', type=int, default=2000, help='pretraining steps')
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--sizes', type=int, nargs='+', default=[100, 1000])
    ap.add_argument('--epochs', type=int, default=20, help='fine-tuning epochs (at least --min-steps steps)')
    ap.add_argument('--min-steps', type=int, default=200)
    ap.add_argument('--datasets', nargs='+', default=['simulated', 'real'], choices=('simulated', 'real'))
    ap.add_argument('--no-scratch', action='store_true', help='finetune: leave out the untrained-backbone rows')
    ap.add_argument('--scratch-regimes', nargs='+', default=['scratch', 'linear'], choices=('scratch', 'linear'))
    ap.add_argument('--regimes', nargs='+', default=list(REGIMES), choices=REGIMES, help='finetune: transfer regimes')
    ap.add_argument('--baselines', default=None, help='merge: JSON of bench/part_small_n.py on the same splits')
    ap.add_argument('--log-rows', nargs='*', default=[], help='merge: logs of interrupted finetune runs (AUC only)')
    ap.add_argument('--out', default=str(HERE / 'results' / 'pretraining_small_n.json'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seed_everything(0)
    cache = Path(a.cache)
    out_dir = Path(a.backbones) if a.backbones else cache / 'pretrain' / 'backbones'
    if a.stage == 'pretrain':
        pretrain(a, cache, out_dir)
    elif a.stage == 'finetune':
        finetune(a, cache, out_dir)
    else:
        if not a.shards or not a.baselines:
            raise SystemExit('merge needs the finetune JSON files and --baselines')
        merge(a, out_dir)


if __name__ == '__main__':
    main()
