"""Tokenization speed and training step time of the OmniJet-α-size conditional tokenizer (`foundation_jets.tokenize`).

Measures, with the same weights in one run (the two variants interleaved, each timed several times, best kept):
- **reference-style**: as the reference implementation tokenizes (encoder plus quantizer): batches of 512 jets in
  input order, every jet padded to 128 slots, the NormFormer encoder over all slots (masked attention, as the
  reference's key padding mask), then the full (512 * 128, K) Euclidean distance matrix with `torch.cdist` over every
  slot, padding included (the reference quantizer knows no mask), and the argmin; codes are read off at real slots;
- **ours**: `foundation_jets.tokenize.shards.encode_sets`: jets sorted by length, batches of 512 jets of similar length
  trimmed to their longest jet, the encoder over those, the chunked nearest-code search
  (`foundation_jets.tokenize.quantizer.nearest_code`) over the real constituents only, results in the input order;
- their ratio and the agreement of the codes (fraction of equal codes and of jets with all codes equal; where codes
  differ, the relative distance gap between the two chosen codes, i.e. whether they are rounding-level near-ties);
- the quantizer alone on one batch (`cdist` over every slot vs the chunked search over real latents);
- the training step time of `fit_tokenizer` (AdamW, batch 512, fp32 on the CPU; bf16 autocast on CUDA).
The tokenizer is the reference size: 4 NormFormer blocks x 128 wide x 8 heads, latent 4, K = 8192, untrained, with its
codebook set to 8192 encoder outputs of real-looking constituents (as a k-means++ seeding would), so that the codes
spread over the codebook like a trained one's. Jets: the embedded simulated jets (`load_embedded_jets`, Pythia 8,
10 JetClass classes) and the 500 real JetClass jets (`data/jetclass_500.root`), preprocessed with `omnijet_spec()`.
Torch uses every CPU thread the machine has (`--threads 0`, the default) and the JSON records `torch.get_num_threads()`
and the load average: on a shared box absolute rates drop, the interleaved ratio much less. A CUDA section runs only
when CUDA is available.

Default: 2,048 simulated jets + the 500 real ones, 2 timed repeats, 2 timed training steps (a few minutes on 2 cores).
`--full`: all 7,750 simulated jets, 3 repeats, 4 training steps. Results go to bench/results/tokenize.json (or --out).

Threads: with more than one torch thread, `encode_sets` runs its (many, medium-sized) batches on worker threads with
one intra-op thread each; splitting every small operation over two threads made our path 10-40x slower on the shared
2-core box (the threads wait for each other). The reference-style path keeps torch's intra-op threading (large ops).

Recorded on the project's 2-core AMD EPYC VM (shared with other jobs; load average in brackets), fp32:
  default, 2 threads (load 0.2-1.6): simulated 141 -> 616 jets/s (4.4x), JetClass 165 -> 1062 jets/s (6.5x);
                                     quantizer alone 5.4x; training 18.5 s/step (batch 512)
  --full,  2 threads (load 2.2-2.0): simulated 115 -> 653 jets/s (5.7x), JetClass 183 -> 1242 jets/s (6.8x);
                                     training 11.8 s/step; 9 of 470k codes differ
                                     (distance gap <= 3e-5, rounding-level ties)
  default, 1 thread  (load 1.6-1.2): simulated  86 -> 357 jets/s (4.2x), JetClass  99 -> 610 jets/s (6.2x)
Every other run: codes agree exactly. The 10x goal is NOT reached: the gain is bounded by the padding fraction (real
JetClass jets use 39 of 128 slots on average, the simulated ones 60) plus the faster search; under heavy machine load
the ratio moved between 3x and 10x.

    python bench/bench_tokenize.py [--full] [--threads 0] [--out bench/results/tokenize.json]
"""

from __future__ import annotations
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from foundation_jets.core import ParticleSet, atomic_write_text, autocast, data_dir, get_device, seed_everything
from foundation_jets.data.features import omnijet_spec
from foundation_jets.data.jets import load_embedded_jets, load_jetclass
from foundation_jets.tokenize.quantizer import nearest_code
from foundation_jets.tokenize.shards import encode_sets
from foundation_jets.tasks.tokenizer import fit_tokenizer
from foundation_jets.tokenize.tokenizers import VQVAETokenizer

HERE = Path(__file__).resolve().parent
BATCH, SLOTS = 512, 128


def sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def pad_to(sets: ParticleSet, n: int = SLOTS) -> ParticleSet:
    "The OmniJet-α layout: every jet in `n` slots (zeros and mask False after its constituents)."
    x = sets.x.new_zeros(len(sets), n, sets.x.shape[-1])
    m = sets.mask.new_zeros(len(sets), n)
    k = min(n, sets.x.shape[1])
    x[:, :k], m[:, :k] = sets.x[:, :k], sets.mask[:, :k]
    return ParticleSet(x, m, sets.labels, feature_names=sets.feature_names)


@torch.no_grad()
def reference_style(tok, sets: ParticleSet, device, batch: int = BATCH) -> torch.Tensor:
    "Codes the reference way: padded batches in input order, encoder over all slots, cdist over all slots and padding."
    codebook = tok.quantizer.effective_codebook().detach().float()
    out = []
    for i in range(0, len(sets), batch):
        x, m = sets.x[i : i + batch].to(device), sets.mask[i : i + batch].to(device)
        z = tok.latents(x, m)  # (b, 128, 4): the encoder over every slot
        idx = (
            torch.cdist(z.reshape(-1, z.shape[-1]).float(), codebook).argmin(-1).view(m.shape)
        )  # (b * 128, K) distances
        out.append(torch.where(m, idx, -1).cpu())
    return torch.cat(out)


def ours(tok, sets: ParticleSet, device, batch: int = BATCH) -> torch.Tensor:
    "Codes our way: sorted, trimmed batches, nearest-code search on real constituents only."
    return encode_sets(tok, sets, batch_size=batch, device=device)


def time_variants(variants: dict, tok, sets, device, repeats: int) -> tuple[dict, dict]:
    "Best-of-`repeats` seconds per variant (interleaved, after a warm-up), and each variant's codes."
    times, codes = {k: [] for k in variants}, {}
    for fn in variants.values():
        fn(tok, sets[:64], device)  # warm-up
    for _ in range(repeats):
        for name, fn in variants.items():
            sync(device)
            t0 = time.perf_counter()
            codes[name] = fn(tok, sets, device)
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()} | {f'{k}_all': v for k, v in times.items()}, codes


@torch.no_grad()
def agreement(tok, sets: ParticleSet, a: torch.Tensor, b: torch.Tensor) -> dict:
    """Fraction of equal codes (real constituents), of jets with all codes equal, and the largest relative gap where
    they differ."""
    m = sets.mask
    same = (a == b) | ~m
    out = dict(
        codes_equal=float(same[m].float().mean()),
        jets_equal=float(same.all(1).float().mean()),
        n_differ=int((~same).sum()),
    )
    if out['n_differ']:
        dev = next(tok.parameters()).device
        z = tok.latents(sets.x.float().to(dev), m.to(dev))[(~same).to(dev)].double().cpu()
        c = tok.quantizer.effective_codebook().detach().double().cpu()
        da, db = (z - c[a[~same]]).norm(dim=-1), (z - c[b[~same]]).norm(dim=-1)
        out['max_relative_distance_gap'] = float(((da - db).abs() / da.clamp(min=1e-12)).max())
    return out


def quantizer_alone(tok, sets: ParticleSet, device, repeats: int) -> dict:
    "One batch of 512 padded jets: cdist over every slot vs the chunked search over the real latents."
    x, m = sets.x[:BATCH].to(device), sets.mask[:BATCH].to(device)
    with torch.no_grad():
        z = tok.to(device).eval().latents(x, m)
    cb = tok.quantizer.effective_codebook().detach().float()

    def full():
        return torch.cdist(z.reshape(-1, z.shape[-1]), cb).argmin(-1)

    def chunked():
        return nearest_code(z[m], cb, tok.quantizer.budget)

    t = {}
    for name, fn in [('cdist_all_slots', full), ('chunked_real_only', chunked)]:
        fn()
        best = float('inf')
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            best = min(best, time.perf_counter() - t0)
        t[f'{name}_s'] = best
    return t | dict(
        latents=int(m.numel()), real_latents=int(m.sum()), ratio=t['cdist_all_slots_s'] / t['chunked_real_only_s']
    )


def training_step(sets: ParticleSet, device, steps: int) -> dict:
    "Seconds per `fit_tokenizer` step (AdamW, batch 512) after one untimed step (k-means++ initialisation, warm-up)."
    seed_everything(0)
    tok = VQVAETokenizer()
    fit_tokenizer(tok, sets, batch_size=BATCH, steps=1, device=device)  # initialises the codebook
    h = fit_tokenizer(tok, sets, batch_size=BATCH, steps=steps, device=device, seed=1)
    return dict(
        seconds_per_step=h['seconds'] / len(h['loss']),
        steps=len(h['loss']),
        batch=BATCH,
        precision='bf16 autocast' if device.type == 'cuda' else 'fp32',
        device=str(device),
    )


def make_tokenizer(sim: ParticleSet, seed: int = 0) -> VQVAETokenizer:
    "Reference-size tokenizer whose effective codebook is 8192 of its own encoder outputs on the simulated jets."
    seed_everything(seed)
    tok = VQVAETokenizer().eval()
    sub = sim[:400]
    with torch.no_grad():
        z = tok.latents(sub.x.float(), sub.mask)[sub.mask]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(z), generator=g)[: tok.num_codes]
    codes = z[pick] + 1e-3 * z.std(0) * torch.randn(len(pick), z.shape[1], generator=g)
    tok.quantizer.set_effective_codes(codes, torch.arange(len(pick)))
    return tok


def bench_device(tok, data: dict, device, repeats: int) -> dict:
    res = {}
    tok = tok.to(device).eval()
    for name, sets in data.items():
        variants = {'reference_style': reference_style, 'ours': ours}
        t, codes = time_variants(variants, tok, sets, device, repeats)
        n = len(sets)
        r = dict(
            n_jets=n,
            mean_constituents=float(sets.counts.float().mean()),
            max_constituents=int(sets.counts.max()),
            padded_slots=SLOTS,
            reference_style_jets_per_s=n / t['reference_style'],
            ours_jets_per_s=n / t['ours'],
            speedup=t['reference_style'] / t['ours'],
            reference_style_seconds=t['reference_style_all'],
            ours_seconds=t['ours_all'],
        )
        r |= agreement(tok, sets, codes['reference_style'], codes['ours'])
        r['codes_used'] = int(codes['ours'][sets.mask].unique().numel())
        if device.type == 'cuda':  # bf16 autocast encoder, float32 nearest-code search

            def ours_bf16(tok, s, dev):
                with autocast(dev):
                    return ours(tok, s, dev)

            tb, cb = time_variants({'ours_bf16': ours_bf16}, tok, sets, device, repeats)
            r['ours_bf16_jets_per_s'] = n / tb['ours_bf16']
            r['ours_bf16_codes_equal'] = agreement(tok, sets, codes['ours'], cb['ours_bf16'])['codes_equal']
        res[name] = r
        print(
            f"  {name:<10} reference-style {r['reference_style_jets_per_s']:9.1f} jets/s"
            f" | ours {r['ours_jets_per_s']:9.1f} jets/s"
            f" | {r['speedup']:5.1f}x | codes equal {r['codes_equal']:.6f}",
            flush=True,
        )
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--full', action='store_true', help='all 7,750 simulated jets, 3 repeats, 4 training steps')
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: every core, torch default)')
    p.add_argument('--no-train', action='store_true', help='skip the training step timing')
    p.add_argument('--out', default=str(HERE / 'results' / 'tokenize.json'))
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    n_sim, repeats, train_steps = (None, 3, 4) if a.full else (2048, 2, 2)
    spec = omnijet_spec()
    sim_raw = load_embedded_jets()
    perm = torch.randperm(
        len(sim_raw), generator=torch.Generator().manual_seed(0)
    )  # classes mixed, as in a shuffled file
    sim = pad_to(spec.apply(sim_raw[perm[:n_sim] if n_sim else perm], compact=True))
    real = pad_to(spec.apply(load_jetclass(data_dir() / 'jetclass_500.root'), compact=True))
    tok = make_tokenizer(sim)
    load0 = os.getloadavg()[0]
    print(
        f"tokenizer 4x128x8, latent 4, K=8192 ({sum(q.numel() for q in tok.parameters()):,} parameters); "
        f"batch {BATCH}, {SLOTS} slots; torch threads {torch.get_num_threads()} of {os.cpu_count()} CPUs; "
        f"load {load0:.1f}",
        flush=True,
    )
    res = dict(
        torch=torch.__version__,
        python=sys.version.split()[0],
        cpu=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        threads=torch.get_num_threads(),
        loadavg_start=load0,
        full=a.full,
        batch=BATCH,
        slots=SLOTS,
        model=dict(
            kind='VQVAETokenizer',
            dim=128,
            num_heads=8,
            num_layers=4,
            latent_dim=4,
            num_codes=8192,
            parameters=sum(q.numel() for q in tok.parameters()),
        ),
        repeats=repeats,
    )
    data = {'simulated': sim, 'jetclass': real}
    cpu = torch.device('cpu')
    print('CPU, fp32:', flush=True)
    res['cpu'] = bench_device(tok, data, cpu, repeats)
    res['cpu']['quantizer_alone'] = quantizer_alone(tok, sim, cpu, repeats)
    if not a.no_train:
        res['cpu']['training'] = training_step(sim, cpu, train_steps)
        print(f"  training: {res['cpu']['training']['seconds_per_step']:.2f} s/step (batch {BATCH}, fp32)", flush=True)
    if torch.cuda.is_available():
        dev = get_device()
        print(f'CUDA ({torch.cuda.get_device_name(dev)}), fp32 (and ours with bf16 autocast):', flush=True)
        res['cuda'] = bench_device(tok, data, dev, repeats) | dict(device_name=torch.cuda.get_device_name(dev))
        res['cuda']['quantizer_alone'] = quantizer_alone(tok, sim, dev, repeats)
        if not a.no_train:
            res['cuda']['training'] = training_step(sim, dev, 10 * train_steps)
        tok.cpu()
    res['loadavg_end'] = os.getloadavg()[0]

    print(
        f"\nOmniJet-α tokenizer (4x128x8, K=8192), batch {BATCH}; {res['threads']} torch threads, "
        f"load {load0:.1f} -> {res['loadavg_end']:.1f}"
    )
    print(f"  {'device / jets':<22} {'reference-style':>16} {'ours':>12} {'ratio':>7} {'codes equal':>12}")
    for dev in [k for k in ('cpu', 'cuda') if k in res]:
        for name in data:
            r = res[dev][name]
            print(
                f"  {dev + ' / ' + name:<22} {r['reference_style_jets_per_s']:>11.1f} j/s"
                f" {r['ours_jets_per_s']:>8.1f} j/s {r['speedup']:>6.1f}x {r['codes_equal']:>12.6f}"
            )
        q = res[dev]['quantizer_alone']
        print(
            f"  {dev + ' / quantizer only':<22} {q['cdist_all_slots_s']:>13.3f} s"
            f" {q['chunked_real_only_s']:>10.3f} s {q['ratio']:>6.1f}x"
            f"   (one batch: {q['latents']} slots, {q['real_latents']} real)"
        )
        if 'training' in res[dev]:
            t = res[dev]['training']
            print(
                f"  {dev + ' / training step':<22} {t['seconds_per_step']:>13.3f} s/step"
                f" ({t['precision']}, batch {t['batch']})"
            )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(res, indent=2) + '\n')
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
