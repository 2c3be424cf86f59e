"""The small-N study of the ParT issue on the CPU: test AUC against the number of labelled jets (100, 1k, 10k) for
ParT from scratch, ParT pretrained on 10-class JetClass-like jets and fine-tuned, a fine-tuned OmniJet-α token
backbone, a particle-flow network and a physics BDT, all on the same splits (`foundation_jets.tasks.tagging`).

Data (simulated by the package, cached outside the repository; `fj simulate jets` makes them, ~25 min on one core):
- top vs QCD: `fj simulate jets --process ZJetsToNuNu TTBar --n-jets 14000 --seed 1 --out <cache>/topqcd`;
  3,000 test jets (1,500 per class), the nested training sets from the other 25,000;
- pretraining: `fj simulate jets --process all --n-jets 2000 --seed 2 --out <cache>/jetclass10` (20,000 jets,
  10 classes, labels used), 10 % held out to report the pretraining accuracy;
- the OmniJet backbone: a `fj demo` run folder (tokenizer.pt, backbone.pt), pretrained without labels on the
  embedded jets of `data/jets` (seed 0: disjoint from both sets above).
Then the 500 real JetClass jets of the shared sample: top vs QCD (half train, half test) and 10 classes.

CPU sizes (this is not the reference scale; tutorial 04 with `smoke = False` is): jets cut to their 64 leading
constituents; ParT 3 + 1 blocks, 32 wide, 4 heads (~50k parameters); the PFN of `models.deepsets`; fixed training
lengths (no early stopping). Results: bench/results/part_small_n.json and a printed table.

Recorded on the project's 2-core VM (2 threads, shared with other jobs), one seed, 3,000 test jets (AUC +-0.002-0.005):
  default run (kin features; 1,619 s): pretraining 700 steps, held-out 10-class accuracy 0.54, macro AUC 0.90
    test AUC, simulated top vs QCD   N = 100   N = 1000   N = 10000
    ParT from scratch                 0.8926    0.9390     0.9737
    ParT pretrained (10-class sim)    0.9666    0.9687     0.9783
    OmniJet fine-tuned (fj demo)      0.9061    0.9449     0.9571
    PFN                               0.9247    0.9513     0.9726
    physics BDT                       0.9687    0.9765     0.9832
    real JetClass, top vs QCD (N = 40, 56 test jets): ParT 0.930, pretrained 0.966, OmniJet 0.947, PFN 0.921, BDT 0.969
    real JetClass, 10 classes (N = 100, 200 test jets), macro AUC: ParT 0.643, pretrained 0.801, OmniJet 0.593,
    PFN 0.722, BDT 0.778
  --sizes 10000 25000 --taggers part_scratch bdt --features kinpid --part-epochs 10 --no-real
  (bench/results/part_large_n.json, 1,560 s): ParT 0.9835 / 0.9889, BDT 0.9832 / 0.9846 at N = 10k / 25k

    python bench/part_small_n.py [--cache ~/.cache/foundation_jets/sim] [--demo DIR] [--threads 2] [--seeds 0]
"""

from __future__ import annotations
import argparse
import os
import platform
import time
from pathlib import Path

import torch

from foundation_jets.core import ParticleSet, collate_sets, seed_everything
from foundation_jets.data.jets import JETCLASS_LABELS, load_jetclass, load_jetclass_npy
from foundation_jets.finetune import jets_to_sentences, load_pretrained_folder
from foundation_jets.metrics import metrics_to_json, tagging_metrics
from foundation_jets.models.part import ParticleTransformer, part_inputs
from foundation_jets.tasks.tagging import (
    TAGGERS,
    part_training_options,
    predict_sets,
    small_n_study,
    small_n_table,
    train_tagger,
)

HERE = Path(__file__).resolve().parent
ARCH = dict(embed_dims=(32, 64, 32), pair_embed_dims=(16, 16), num_heads=4, num_layers=3, num_cls_layers=1)
TOP, QCD = JETCLASS_LABELS.index('Tbqq'), JETCLASS_LABELS.index('QCD')
PREFIXES = ('HToBB', 'HToCC', 'HToGG', 'HToWW4Q', 'HToWW2Q1L', 'TTBar', 'TTBarLep', 'WToQQ', 'ZToQQ', 'ZJetsToNuNu')


PID_BRANCHES = (
    'part_charge',
    'part_isChargedHadron',
    'part_isNeutralHadron',
    'part_isPhoton',
    'part_isElectron',
    'part_isMuon',
)


def read(paths: list, max_particles: int, features: str) -> ParticleSet:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f'{missing[0]}: missing; make the simulated jets first (see this script\'s docstring)')
    branches = ('part_px', 'part_py', 'part_pz', 'part_energy') + (PID_BRANCHES if features == 'kinpid' else ())
    return collate_sets([load_jetclass(p, max_particles=max_particles, particle_features=branches) for p in paths])


def binary(raw: ParticleSet, features: str) -> ParticleSet:
    sets = part_inputs(raw, features)
    sets.labels = (raw.labels == TOP).long()
    return sets


def split(sets: ParticleSet, n_test: int) -> tuple:
    "(train, test) with `n_test` random test sets."
    order = torch.randperm(len(sets), generator=torch.Generator().manual_seed(0))
    return sets[order[n_test:]], sets[order[:n_test]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cache', default=os.path.expanduser('~/.cache/foundation_jets/sim'))
    ap.add_argument('--demo', default=None, help='fj demo run folder (default: <cache>/demo)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seeds', type=int, nargs='+', default=[0])
    ap.add_argument('--sizes', type=int, nargs='+', default=[100, 1000, 10000])
    ap.add_argument('--max-particles', type=int, default=64)
    ap.add_argument('--taggers', nargs='+', default=list(TAGGERS), choices=TAGGERS)
    ap.add_argument('--part-epochs', type=int, default=6, help='epochs of part_scratch and part_pretrained')
    ap.add_argument('--no-real', action='store_true', help='skip the real JetClass sample')
    ap.add_argument('--features', default='kin', choices=('kin', 'kinpid'), help='ParT/PFN features (real: kin)')
    ap.add_argument('--out', default=str(HERE / 'results' / 'part_small_n.json'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seed_everything(0)
    cache = Path(a.cache)
    t0 = time.perf_counter()

    raw = read([cache / 'topqcd' / f'{p}_001.root' for p in ('TTBar', 'ZJetsToNuNu')], a.max_particles, a.features)
    sets = binary(raw, a.features)
    perm = torch.randperm(len(sets), generator=torch.Generator().manual_seed(0))
    by_class = [perm[sets.labels[perm] == c] for c in (0, 1)]
    test_idx = torch.cat([b[:1500] for b in by_class])
    pool_idx = torch.cat([b[1500:] for b in by_class])
    test, pool = sets[test_idx], sets[pool_idx]
    print(f'top vs QCD: {len(pool)} pool, {len(test)} test jets ({time.perf_counter() - t0:.0f} s)')

    pretrained, pre_summary, omnijet = None, None, None
    if 'part_pretrained' in a.taggers:
        pre_raw = read([cache / 'jetclass10' / f'{p}_002.root' for p in PREFIXES], a.max_particles, a.features)
        pre = part_inputs(pre_raw, a.features)
        order = torch.randperm(len(pre), generator=torch.Generator().manual_seed(1))
        hold = len(order) // 10
        torch.manual_seed(0)
        pretrained = ParticleTransformer(pre.num_features, 10, **ARCH)
        options = part_training_options() | dict(epochs=5, batch_size=128, lr=2e-3)
        pre_log = train_tagger(pretrained, pre[order[hold:]], seed=0, **options)
        pre_scores = tagging_metrics(predict_sets(pretrained, pre[order[:hold]], ('p4',)), pre.labels[order[:hold]])
        pre_summary = {'jets': len(pre) - hold, 'steps': pre_log['steps'], 'seconds': pre_log['seconds']}
        pre_summary['held_out'] = pre_scores
        print(
            f"pretraining: {pre_log['steps']} steps, {pre_log['seconds']:.0f} s, held-out 10-class accuracy "
            f"{pre_scores['accuracy']:.3f}, macro AUC {pre_scores['auc']:.3f}"
        )

    if 'omnijet_finetuned' in a.taggers:
        run = load_pretrained_folder(a.demo or cache / 'demo')

        def to_sentences(s: ParticleSet):
            names = ('part_px', 'part_py', 'part_pz', 'part_energy')
            raw = ParticleSet(s.meta['p4'], s.mask, s.labels, feature_names=names)
            return jets_to_sentences(run['tokenizer'], run['spec'], run['vocab'], raw)

        omnijet = {'backbone': run['backbone'], 'to_sentences': to_sentences}

    study = dict(
        part_arch=ARCH,
        part_pretrained=pretrained,
        omnijet=omnijet,
        part_train=dict(epochs=a.part_epochs, min_steps=150, batch_size=128, lr=2e-3),
        part_finetune=dict(epochs=a.part_epochs, min_steps=150, batch_size=128),
        pfn_train=dict(epochs=20, min_steps=300, batch_size=128),
        omnijet_train=dict(epochs=10, min_steps=200, batch_size=128, lr=1e-3, backbone_lr=3e-4),
        verbose=True,
    )
    rows = small_n_study(pool, test, a.sizes, a.taggers, a.seeds, **study)
    print(small_n_table(rows))

    real_rows, real10_rows = [], []
    real = part_inputs(load_jetclass_npy(), 'kin')
    two = real[(real.labels == TOP) | (real.labels == QCD)]
    two.labels = (two.labels == TOP).long()
    if not a.no_real and a.features == 'kin':  # the real sample holds four-vectors only
        real_rows = small_n_study(*split(two, len(two) // 2), (40,), a.taggers, a.seeds, **study)
        classes = dict(class_names=JETCLASS_LABELS)
        real10_rows = small_n_study(*split(real, 200), (100,), a.taggers, a.seeds, **classes, **study)
        print('real JetClass top vs QCD\n' + small_n_table(real_rows))
        print('real JetClass 10 classes (macro AUC)\n' + small_n_table(real10_rows))

    metrics_to_json(
        {
            'machine': {'platform': platform.platform(), 'threads': torch.get_num_threads(), 'load': os.getloadavg()},
            'config': {'arch': ARCH, 'max_particles': a.max_particles, 'sizes': a.sizes, 'seeds': a.seeds}
            | {'taggers': a.taggers, 'part_epochs': a.part_epochs, 'features': a.features},
            'pretraining': pre_summary,
            'simulated_top_vs_qcd': rows,
            'real_top_vs_qcd': real_rows,
            'real_10_classes': real10_rows,
            'tables': {
                'simulated_auc': small_n_table(rows),
                'simulated_rej30': small_n_table(rows, 'rej30'),
                'real_top_vs_qcd_auc': small_n_table(real_rows),
                'real_10_classes_auc': small_n_table(real10_rows),
            },
            'seconds': time.perf_counter() - t0,
        },
        a.out,
        allow_nan=True,  # a rejection on the small real samples can be infinite (no background left)
    )
    print(f'wrote {a.out} ({time.perf_counter() - t0:.0f} s)')


if __name__ == '__main__':
    main()
