"""Particle Transformer: ours (`foundation_jets.models.part.ParticleTransformer`) vs the original (weaver-core's ParT).

Both models hold the same weights in one run: weaver's ParT is built in the reference configuration (8 particle blocks
x 128 wide x 8 heads, pair network 64-64-64, 2 class-attention blocks, `kin` features, 10 classes; as `weaver_part`
in nbs/14_models.part.ipynb, BatchNorm statistics and scales moved off their initial values), and its state dict is
loaded into ours with `from_weaver_state_dict`. Measured, side by side and as ratios (ours faster: ratio > 1):
1. output identity: max |logit difference| in evaluation mode on the benchmark jets, in float64 (must be < 1e-5, the
   run fails otherwise) and in float32 (weaver computes m^2 = E^2 - |p|^2 in float32, which moves its own logits by
   ~5e-3; ours computes the pair features in float64);
2. training step time: forward + backward + AdamW step, train mode (dropout on), trimming augmentation on in both
   after their 5 warm-up batches (each step is seeded identically for both, so both draw the same trim length),
   batch 64 of 128 padded slots, real JetClass jets with 20-100 particles; the two models interleaved, median s/step;
3. inference jets/s (eval, no_grad) on the same batches;
4. peak memory of one training step against the number of particles N (all N slots real, batch 64): synthetic
   massless jets (pT exponential, eta/phi Gaussians around the jet axis, E = |p|; the real jets have at most 80
   particles), each (model, N) in a fresh subprocess: peak RSS after the step minus peak RSS after building the
   model and the inputs (VmHWM, the process's own `ru_maxrss`: see `peak_rss_kib`); on CUDA, in process,
   `torch.cuda.max_memory_allocated` above the memory after setup;
5. CUDA only: bf16 autocast, training step and inference at batch 512 (otherwise "not measured: no CUDA").
Jets: the 500 real JetClass jets of `load_jetclass_npy()` (459 have 20-100 particles: 7 batches of 64), `kin` features
from `part_inputs`. Weaver gets x (B, 7, P), v (B, 4, P) and a float mask (B, 1, P), made contiguous outside timing.
Threads: 2 torch threads by default (`--threads`), with OpenMP's passive wait policy (`OMP_WAIT_POLICY=PASSIVE`
unless set otherwise): with the default active (spinning) policy, 2 threads on the 2-core box shared with a Pythia job
made one training step ~10x slower for both models (N=32: weaver 8.6 s vs 0.72 s passive), burying the comparison.
`--profile` adds a torch.profiler breakdown (top operators by self CPU time) of one training step of each.

Recorded on the project's 2-core AMD EPYC VM, default settings (2 threads, passive OpenMP wait), fp32, torch 2.13 CPU,
weaver-core 0.5.3, after our block MLP was restricted to real particles (load average 1.2 -> 1.5, no other job):
  identity:  max |logit difference| float64 1.4e-8 (448 jets); float32 3.0e-3 (ours vs float64 2.9e-6, weaver 3.0e-3)
  training:  weaver 1.411 s/step (45.4 jets/s), ours 1.263 s/step (50.7 jets/s): 1.12x (8 steps, same trim lengths)
  inference: weaver 161.2 jets/s, ours 188.3 jets/s: 1.17x
  peak memory of a training step, N = 32 / 64 / 128 / 256 (batch 64):
             weaver 574 / 1573 / 3704 / 10272 MiB, ours 554 / 1420 / 3562 / 10491 MiB (ratio 1.04 / 1.11 / 1.04 / 0.98)
Before that change (same script, loaded box, load 3.4 -> 3.0): training 1.04x, inference 0.96x. One training step under
torch.profiler, 1 thread: weaver 1.28 s, ours 1.24 s; in both, matrix products (mm, addmm, bmm) take ~46-49% of the
self CPU time and the attention-dropout masks (bernoulli_, 32 calls) ~18-19%.
The 1.5x training goal is NOT reached. weaver-core 0.5.3 already does what the issue names as the lever: it trims the
batch (the same length as ours, checked step by step), computes the pair features only for real pairs of one triangle
(its sparse pair path, on in training and inference) and uses scaled_dot_product_attention. Our one extra saving is the
block MLP on real particles only (about half the slots of a trimmed batch are padding). The issue's 23 jets/s for
weaver is not reproduced here (39-45 jets/s).

    python bench/bench_part.py [--threads 2] [--steps 8] [--quick] [--profile] [--out bench/results/part.json]
"""

from __future__ import annotations
import argparse
import copy
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # read when torch loads OpenMP: see the docstring

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from foundation_jets.core import ParticleSet, atomic_write_text  # noqa: E402
from foundation_jets.data.jets import load_jetclass_npy  # noqa: E402
from foundation_jets.models.part import from_weaver_state_dict, part_inputs  # noqa: E402

HERE = Path(__file__).resolve().parent
BATCH, SLOTS, INPUT_DIM, NUM_CLASSES = 64, 128, 7, 10
MIN_PARTICLES, MAX_PARTICLES = 20, 100
MEMORY_N = (32, 64, 128, 256)
CUDA_BATCH = 512
TOLERANCE_FLOAT64 = 1e-5


def weaver_part(input_dim: int, num_classes: int, seed: int = 0):
    "weaver-core's ParT in the reference configuration, as in nbs/14_models.part.ipynb (statistics moved off init)."
    from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

    torch.manual_seed(seed)
    w = WeaverParT(
        input_dim=input_dim,
        num_classes=num_classes,
        pair_input_dim=4,
        use_pre_activation_pair=False,
        embed_dims=[128, 512, 128],
        pair_embed_dims=[64, 64, 64],
        num_heads=8,
        num_layers=8,
        num_cls_layers=2,
        block_params=None,
        cls_block_params={'dropout': 0, 'attn_dropout': 0, 'activation_dropout': 0},
        fc_params=[],
        activation='gelu',
        trim=True,
        for_inference=False,
    )
    with torch.no_grad():
        for name, t in w.state_dict().items():
            if t.is_floating_point() and ('running_var' in name or 'c_attn' in name or 'w_resid' in name):
                t.uniform_(0.5, 1.5)
            elif t.is_floating_point() and ('running_mean' in name or name.endswith('norm.bias') or 'bn' in name):
                t.add_(0.3 * torch.randn_like(t))
    return w.eval()


def make_models(seed: int = 0) -> dict:
    "Fresh weaver ParT and ours with the same weights (fresh trimming warm-up counters), in eval mode."
    weaver = weaver_part(INPUT_DIM, NUM_CLASSES, seed)
    ours = from_weaver_state_dict({'mod.' + k: v for k, v in weaver.state_dict().items()}, INPUT_DIM, NUM_CLASSES)
    return {'weaver': weaver, 'ours': ours}


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def make_batch(x, p4, mask, labels, device=torch.device('cpu'), dtype=torch.float32) -> dict:
    "One batch in both layouts: ours (B, P, F) with a bool mask, weaver's (B, F, P) with a float (B, 1, P) mask."
    x, p4, mask = x.to(device, dtype), p4.to(device, dtype), mask.to(device)
    return dict(
        x=x,
        p4=p4,
        mask=mask,
        labels=labels.to(device),
        wx=x.transpose(1, 2).contiguous(),
        wv=p4.transpose(1, 2).contiguous(),
        wmask=mask[:, None].to(dtype),
    )


def forward(name: str, model, b: dict):
    if name == 'weaver':
        return model(b['wx'], b['wv'], b['wmask'])
    return model(b['x'], b['p4'], b['mask'])


def benchmark_jets(seed: int = 0) -> ParticleSet:
    "The real JetClass jets with 20-100 particles, `kin` features and four-vectors, in a fixed shuffled order."
    jets = load_jetclass_npy(max_particles=SLOTS)
    inputs = part_inputs(jets, 'kin')
    counts = inputs.mask.sum(1)
    keep = ((counts >= MIN_PARTICLES) & (counts <= MAX_PARTICLES)).nonzero()[:, 0]
    keep = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(seed))]
    return inputs[keep]


def batches_of(inputs: ParticleSet, batch: int, device=torch.device('cpu'), dtype=torch.float32) -> list:
    "Full batches (the last partial one dropped)."
    out = []
    for i in range(0, len(inputs) - batch + 1, batch):
        s = inputs[i : i + batch]
        out.append(make_batch(s.x, s.meta['p4'], s.mask, s.labels, device, dtype))
    return out


@torch.no_grad()
def output_identity(inputs: ParticleSet) -> dict:
    "Max |logit difference| between weaver and ours (same weights, eval) in float64 and float32, every jet."
    models = make_models()
    m64 = {k: copy.deepcopy(m).double() for k, m in models.items()}
    logits = {k: [] for k in ('weaver64', 'ours64', 'weaver32', 'ours32')}
    for b64, b32 in zip(batches_of(inputs, BATCH, dtype=torch.float64), batches_of(inputs, BATCH)):
        for name in models:
            logits[name + '64'].append(forward(name, m64[name], b64))
            logits[name + '32'].append(forward(name, models[name], b32).double())
    lg = {k: torch.cat(v) for k, v in logits.items()}
    res = dict(
        n_jets=len(lg['ours64']),
        float64_max_abs_diff=float((lg['ours64'] - lg['weaver64']).abs().max()),
        float32_max_abs_diff=float((lg['ours32'] - lg['weaver32']).abs().max()),
        float32_ours_vs_float64=float((lg['ours32'] - lg['weaver64']).abs().max()),
        float32_weaver_vs_float64=float((lg['weaver32'] - lg['weaver64']).abs().max()),
        logit_scale=float(lg['weaver64'].abs().max()),
        tolerance_float64=TOLERANCE_FLOAT64,
    )
    if not res['float64_max_abs_diff'] < TOLERANCE_FLOAT64:
        raise SystemExit(
            f"bench_part: outputs differ: max |logit difference| in float64 is {res['float64_max_abs_diff']:.3e}"
            f' >= {TOLERANCE_FLOAT64:g} (same weights, eval mode): the speed comparison would be meaningless'
        )
    return res


class Trainer:
    "One model, its AdamW optimizer and a recorder of the sequence length each training step really ran at."

    def __init__(self, name: str, model, device=torch.device('cpu'), autocast_dtype=None):
        self.name, self.model, self.device, self.autocast_dtype = name, model.to(device).train(), device, autocast_dtype
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.lengths = []
        if name == 'weaver':  # after the trimmer: (x, v, mask, uu), mask (B, 1, P)
            self.model.trimmer.register_forward_hook(lambda m, i, out: self.lengths.append(out[2].shape[-1]))
        else:  # the backbone sees the trimmed batch
            self.model.backbone.register_forward_pre_hook(lambda m, args: self.lengths.append(args[0].shape[1]))

    def step(self, b: dict, seed: int) -> float:
        "Seconds of one forward + backward + AdamW step; `seed` fixes the trim draw (the same for both models)."
        torch.manual_seed(seed)
        sync(self.device)
        t0 = time.perf_counter()
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            loss = F.cross_entropy(forward(self.name, self.model, b).float(), b['labels'])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        sync(self.device)
        if not math.isfinite(float(loss.detach())):
            raise SystemExit(f'bench_part: {self.name} training loss is {float(loss.detach())}')
        return time.perf_counter() - t0


def training(batches: list, steps: int, warmup: int = 6, device=torch.device('cpu'), autocast_dtype=None) -> dict:
    """Median seconds per training step of each model, interleaved (the order alternates each step), after `warmup`
    untimed steps (5 are the trimming warm-up of both models)."""
    models = make_models()
    trainers = {k: Trainer(k, m, device, autocast_dtype) for k, m in models.items()}
    times = {k: [] for k in trainers}
    for k in range(warmup + steps):
        order = list(trainers) if k % 2 == 0 else list(trainers)[::-1]
        for name in order:
            t = trainers[name].step(batches[k % len(batches)], seed=1000 + k)
            if k >= warmup:
                times[name].append(t)
    batch = len(batches[0]['labels'])
    res = {}
    for name, tr in trainers.items():
        med = statistics.median(times[name])
        res[name] = dict(
            seconds_per_step=med,
            jets_per_s=batch / med,
            seconds=times[name],
            lengths_timed=tr.lengths[warmup:],
            lengths_warmup=tr.lengths[:warmup],
        )
    res['speedup'] = res['weaver']['seconds_per_step'] / res['ours']['seconds_per_step']
    res['same_trim_lengths'] = res['weaver']['lengths_timed'] == res['ours']['lengths_timed']
    res |= dict(batch=batch, steps=steps, warmup=warmup, optimizer='AdamW(lr=1e-4)', slots=SLOTS)
    return res


@torch.no_grad()
def inference(batches: list, repeats: int, device=torch.device('cpu'), autocast_dtype=None) -> dict:
    "Jets/s of each model in eval mode over the same batches: the median of `repeats` interleaved passes."
    models = {k: m.to(device).eval() for k, m in make_models().items()}
    n = sum(len(b['labels']) for b in batches)
    times = {k: [] for k in models}
    for r in range(repeats + 1):  # the first pass warms up (and uses up weaver's trimming warm-up counter)
        for name in list(models) if r % 2 == 0 else list(models)[::-1]:
            sync(device)
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                for b in batches:
                    forward(name, models[name], b)
            sync(device)
            if r:
                times[name].append(time.perf_counter() - t0)
    res = {k: dict(jets_per_s=n / statistics.median(v), seconds=v) for k, v in times.items()}
    res['speedup'] = res['ours']['jets_per_s'] / res['weaver']['jets_per_s']
    res |= dict(n_jets=n, batches=len(batches), repeats=repeats)
    return res


def synthetic_jets(batch: int, n: int, seed: int = 0) -> ParticleSet:
    """`batch` massless jets with exactly `n` particles: pT ~ 1 + Exp(mean 10 GeV), eta and phi Gaussian (sigma 0.2)
    around a jet axis (eta ~ U(-1, 1), phi ~ U(-pi, pi)), E = |p|; `kin` features and four-vectors."""
    g = torch.Generator().manual_seed(seed)
    pt = (1.0 + torch.empty(batch, n, dtype=torch.float64).exponential_(0.1, generator=g)).sort(1, descending=True)[0]
    eta = (2 * torch.rand(batch, 1, generator=g, dtype=torch.float64) - 1) + 0.2 * torch.randn(
        batch, n, generator=g, dtype=torch.float64
    )
    phi = (2 * torch.rand(batch, 1, generator=g, dtype=torch.float64) - 1) * math.pi + 0.2 * torch.randn(
        batch, n, generator=g, dtype=torch.float64
    )
    px, py, pz = pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta)
    p4 = torch.stack([px, py, pz, (px**2 + py**2 + pz**2).sqrt()], -1).float()
    sets = ParticleSet(
        p4,
        torch.ones(batch, n, dtype=torch.bool),
        torch.randint(0, NUM_CLASSES, (batch,), generator=g),
        feature_names=('part_px', 'part_py', 'part_pz', 'part_energy'),
    )
    return part_inputs(sets, 'kin')


def peak_rss_kib() -> int:
    """This process's peak resident memory (KiB): `VmHWM` of /proc/self/status where there is one, else `ru_maxrss`.
    On Linux `ru_maxrss` carries over the parent's peak through fork + exec (a child of this 3 GB benchmark starts at
    3 GB), `VmHWM` belongs to the process's own address space."""
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def memory_child(name: str, n: int, repeats: int) -> dict:
    "In a fresh process: peak RSS growth (MiB) over `repeats` training steps of one model at N particles."
    sets = synthetic_jets(BATCH, n)
    b = make_batch(sets.x, sets.meta['p4'], sets.mask, sets.labels)
    tr = Trainer(name, make_models()[name])
    base = peak_rss_kib()
    times = [tr.step(b, seed=k) for k in range(repeats)]
    peak = peak_rss_kib()
    return dict(model=name, n=n, peak_mib=(peak - base) / 1024, baseline_mib=base / 1024, seconds_per_step=times)


def memory_cpu(threads: int, ns=MEMORY_N) -> dict:
    "Each (model, N) in a fresh subprocess (interleaved), fewer repeats at the largest N."
    res = {}
    for n in ns:
        for name in ('weaver', 'ours'):
            cmd = [sys.executable, __file__, '--memory-child', name, str(n), '--threads', str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f'bench_part: memory child {name} N={n} failed:\n{out.stderr[-3000:]}')
            r = json.loads(out.stdout.strip().splitlines()[-1])
            res.setdefault(str(n), {})[name] = r
            print(
                f"  N={n:<4} {name:<7} peak +{r['peak_mib']:8.1f} MiB  {min(r['seconds_per_step']):7.2f} s/step",
                flush=True,
            )
        res[str(n)]['ratio'] = res[str(n)]['weaver']['peak_mib'] / max(res[str(n)]['ours']['peak_mib'], 1e-9)
    return res


def memory_cuda(device, ns=MEMORY_N) -> dict:
    "Peak allocated CUDA memory (MiB) of one fp32 training step at N particles, above the memory after setup."
    res = {}
    for n in ns:
        sets = synthetic_jets(BATCH, n)
        b = make_batch(sets.x, sets.meta['p4'], sets.mask, sets.labels, device)
        for name in ('weaver', 'ours'):
            tr = Trainer(name, make_models()[name], device)
            tr.step(b, seed=0)  # optimizer state and workspaces exist after one step
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            t = tr.step(b, seed=1)
            peak = torch.cuda.max_memory_allocated(device)
            res.setdefault(str(n), {})[name] = dict(peak_mib=(peak - base) / 2**20, seconds_per_step=[t])
            del tr
            torch.cuda.empty_cache()
        res[str(n)]['ratio'] = res[str(n)]['weaver']['peak_mib'] / max(res[str(n)]['ours']['peak_mib'], 1e-9)
    return res


def profile_step(batches: list, top: int = 15) -> dict:
    "torch.profiler table (self CPU time) of one training step of each model, after the trimming warm-up."
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for name, model in make_models().items():
        tr = Trainer(name, model)
        for k in range(6):
            tr.step(batches[k % len(batches)], seed=1000 + k)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            tr.step(batches[6 % len(batches)], seed=2000)
        avg = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in avg)
        out[name] = [
            dict(op=e.key, self_ms=e.self_cpu_time_total / 1e3, share=e.self_cpu_time_total / total, calls=e.count)
            for e in avg[:top]
        ]
        print(f'\n  {name}: one training step, top {top} operators by self CPU time (total {total / 1e6:.2f} s)')
        for e in out[name]:
            print(f"    {e['op']:<44} {e['self_ms']:9.1f} ms {100 * e['share']:5.1f}%  {e['calls']:6d} calls")
    return out


def cuda_section(inputs: ParticleSet, steps: int) -> dict:
    "bf16 autocast on CUDA for both models: training step and inference at batch 512, plus the memory scan (fp32)."
    dev = torch.device('cuda')
    reps = math.ceil(4 * CUDA_BATCH / len(inputs))  # 4 batches of 512 from the real jets, repeated
    big = ParticleSet(
        inputs.x.repeat(reps, 1, 1),
        inputs.mask.repeat(reps, 1),
        inputs.labels.repeat(reps),
        meta={'p4': inputs.meta['p4'].repeat(reps, 1, 1)},
    )
    batches = batches_of(big, CUDA_BATCH, dev)
    res = dict(device_name=torch.cuda.get_device_name(dev), batch=CUDA_BATCH, precision='bf16 autocast')
    res['training'] = training(batches, 4 * steps, warmup=10, device=dev, autocast_dtype=torch.bfloat16)
    res['inference'] = inference(batches, 5, dev, torch.bfloat16)
    res['memory_fp32'] = memory_cuda(dev)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    p.add_argument('--steps', type=int, default=8, help='timed training steps per model (after 6 warm-up steps)')
    p.add_argument('--quick', action='store_true', help='3 timed steps, 1 inference repeat, memory at N <= 128')
    p.add_argument('--profile', action='store_true', help='torch.profiler breakdown of one training step of each')
    p.add_argument('--out', default=str(HERE / 'results' / 'part.json'))
    p.add_argument('--memory-child', nargs=2, metavar=('MODEL', 'N'), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.memory_child:
        name, n = a.memory_child[0], int(a.memory_child[1])
        print(json.dumps(memory_child(name, n, repeats=1 if n >= 256 else 2)))
        return 0
    steps, repeats = (3, 1) if a.quick else (a.steps, 3)
    inputs = benchmark_jets()
    batches = batches_of(inputs, BATCH)
    load0 = os.getloadavg()[0]
    counts = inputs.mask.sum(1).float()
    n_par = n_parameters(make_models()['ours'])
    print(
        f'ParT 8x128x8 (kin, 10 classes, {n_par:,} parameters); {len(inputs)} JetClass jets'
        f' with {MIN_PARTICLES}-{MAX_PARTICLES} particles (mean {counts.mean():.1f}), batch {BATCH} of {SLOTS} slots;'
        f' torch threads {torch.get_num_threads()} of {os.cpu_count()} CPUs; load {load0:.1f}',
        flush=True,
    )
    res = dict(
        torch=torch.__version__,
        python=sys.version.split()[0],
        cpu=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        threads=torch.get_num_threads(),
        omp_wait_policy=os.environ.get('OMP_WAIT_POLICY'),
        loadavg_start=load0,
        quick=a.quick,
        model=dict(
            kind='ParticleTransformer',
            input_dim=INPUT_DIM,
            num_classes=NUM_CLASSES,
            embed_dims=[128, 512, 128],
            pair_embed_dims=[64, 64, 64],
            num_heads=8,
            num_layers=8,
            num_cls_layers=2,
            parameters=n_par,
        ),
        jets=dict(
            source='load_jetclass_npy() (500 real JetClass jets)',
            n_jets=len(inputs),
            particles=[MIN_PARTICLES, MAX_PARTICLES],
            mean_particles=float(counts.mean()),
            max_particles=int(counts.max()),
            slots=SLOTS,
        ),
    )
    print('output identity (eval, same weights):', flush=True)
    res['identity'] = output_identity(inputs)
    r = res['identity']
    print(
        f"  max |logit diff| float64 {r['float64_max_abs_diff']:.1e} (< {TOLERANCE_FLOAT64:g}),"
        f" float32 {r['float32_max_abs_diff']:.1e} (vs float64: ours {r['float32_ours_vs_float64']:.1e},"
        f" weaver {r['float32_weaver_vs_float64']:.1e})",
        flush=True,
    )
    print('CPU fp32 training (interleaved):', flush=True)
    res['cpu'] = dict(training=training(batches, steps))
    t = res['cpu']['training']
    print(
        f"  weaver {t['weaver']['seconds_per_step']:.3f} s/step | ours {t['ours']['seconds_per_step']:.3f} s/step"
        f" | {t['speedup']:.2f}x | same trim lengths: {t['same_trim_lengths']}",
        flush=True,
    )
    res['cpu']['inference'] = inference(batches, repeats)
    i = res['cpu']['inference']
    print(
        f"  inference: weaver {i['weaver']['jets_per_s']:.1f} jets/s | ours {i['ours']['jets_per_s']:.1f} jets/s"
        f" | {i['speedup']:.2f}x",
        flush=True,
    )
    print('CPU peak memory of one training step (batch 64, all N slots real, fresh subprocesses):', flush=True)
    res['cpu']['memory'] = memory_cpu(a.threads, MEMORY_N[:3] if a.quick else MEMORY_N)
    if a.profile:
        res['cpu']['profile'] = profile_step(batches)
    if torch.cuda.is_available():
        print(f'CUDA ({torch.cuda.get_device_name()}), bf16 autocast, batch {CUDA_BATCH}:', flush=True)
        res['cuda'] = cuda_section(inputs, steps)
    else:
        res['cuda'] = 'not measured: no CUDA'
    res['loadavg_end'] = os.getloadavg()[0]

    print(
        f"\nParT, weaver-core vs ours (same weights); {res['threads']} torch threads,"
        f" load {load0:.1f} -> {res['loadavg_end']:.1f}"
    )
    print(f"  {'measure':<38} {'weaver':>12} {'ours':>12} {'ratio':>7}")
    devs = [('cpu', res['cpu'])] + ([('cuda', res['cuda'])] if isinstance(res['cuda'], dict) else [])
    for dev, d in devs:
        t, i = d['training'], d['inference']
        print(
            f"  {dev + ' training, batch ' + str(t['batch']):<38} {t['weaver']['jets_per_s']:>7.1f} j/s"
            f" {t['ours']['jets_per_s']:>7.1f} j/s {t['speedup']:>6.2f}x"
        )
        print(
            f"  {dev + ' training, s/step':<38} {t['weaver']['seconds_per_step']:>10.3f} s"
            f" {t['ours']['seconds_per_step']:>10.3f} s"
        )
        print(
            f"  {dev + ' inference':<38} {i['weaver']['jets_per_s']:>7.1f} j/s"
            f" {i['ours']['jets_per_s']:>7.1f} j/s {i['speedup']:>6.2f}x"
        )
        mem = d['memory'] if dev == 'cpu' else d['memory_fp32']
        for n, m in mem.items():
            print(
                f"  {dev + ' peak memory, training, N=' + n:<38} {m['weaver']['peak_mib']:>8.0f} MiB"
                f" {m['ours']['peak_mib']:>8.0f} MiB {m['ratio']:>6.2f}x"
            )
    r = res['identity']
    print(
        f"  {'max |logit diff| float64 / float32':<38}"
        f" {r['float64_max_abs_diff']:>12.1e} {r['float32_max_abs_diff']:>12.1e}"
    )
    if not isinstance(res['cuda'], dict):
        print(f"  cuda: {res['cuda']}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(res, indent=2) + '\n')
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
