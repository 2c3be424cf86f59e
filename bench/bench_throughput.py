"""Data throughput against model consumption, per pipeline, and the model FLOPs utilisation (MFU) of training.

For each pipeline, in one run on one machine:
- **loader**: examples/s that the pipeline's data path delivers on CPU worker processes: a
  `data.modules.StreamingDataModule` over files in the pipeline's on-disk format, with its reader and feature
  transform (jets: HDF5 set shards + `omnijet_spec` / `part_spec('kin')`; GPT: token shards through
  `tokenize.sentences.TokenDataModule`; LArTPC: PILArNet-M v2 files + `read_pilarnet`; L1: ADC2021 files +
  `read_adc2021`; tracking: barrel hit shards), `--workers` workers, the model's batch size;
- **model**: examples/s that one training step consumes (forward, backward and AdamW step) of the model at its
  reference size on `--device`, fed with a batch that the loader produced (bf16 autocast on CUDA, fp32 on CPU);
- their ratio: the loader must sustain at least 5x what the model consumes (`target_ratio`);
- the FLOPs of one training step (torch's `FlopCounterMode`: matmuls, convolutions and attention, forward and
  backward; torch registers no formula for the CPU flash-attention kernels, so `flop_counter` adds theirs), the
  achieved FLOP/s and, on CUDA, the MFU against the device's dense bf16 peak (`BF16_PEAK`).
The data are simulated or drawn from the shared real samples into a temporary directory, so the run needs no
download. CPU default: 2 timed steps after one warm-up (a few minutes); `--steps` for more.

    python bench/bench_throughput.py [--device cpu] [--workers 2] [--steps 2] [--out bench/results/throughput.json]
"""

from __future__ import annotations
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from foundation_jets.core import atomic_write_text, autocast, get_device, seed_everything
from foundation_jets.data.detectors import ADC2021_SLOT_TYPES, read_adc2021, write_adc2021_h5
from foundation_jets.data.features import adc2021_sets, adc2021_spec, omnijet_spec
from foundation_jets.data.jets import load_jetclass_npy
from foundation_jets.data.modules import StreamingDataModule, write_h5_shard
from foundation_jets.models.part import part_inputs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 5.0
warnings.filterwarnings('ignore', message='You are trying to `self.log')  # tasks stepped outside a Trainer
BF16_PEAK = {  # dense bf16 tensor-core peak FLOP/s (vendor data sheets, SXM parts)
    'H200': 989e12,
    'H100': 989e12,
    'A100': 312e12,
    'L40S': 362e12,
    'A10': 125e12,
}


def bf16_peak(device: torch.device) -> float | None:
    "The dense bf16 peak of a CUDA device from its name (None on CPU or an unknown device)."
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def loader_rate(dm, max_examples: int) -> dict:
    "Examples/s of a data module's training loader (first batch, which starts the workers, excluded)."
    it = iter(dm.train_dataloader())
    first = next(it)
    n, t0 = 0, time.perf_counter()
    for batch in it:
        n += len(batch_size_of(batch))
        if n >= max_examples:
            break
    dt = time.perf_counter() - t0
    return dict(examples=n, seconds=dt, examples_per_s=n / dt if dt > 0 else float('inf'), first=first)


def _cpu_flash_forward_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def flop_counter() -> FlopCounterMode:
    "torch's FLOP counter, with the CPU flash-attention kernels counted as the CUDA ones are (4 b h q k d forward)."
    aten = torch.ops.aten
    cpu_attention = {
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_forward_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flops,
    }
    return FlopCounterMode(display=False, custom_mapping=cpu_attention)


def step_rate(step, batch_size: int, steps: int, device) -> dict:
    "Examples/s and FLOPs of one training step `step()` (median of `steps` after one warm-up)."
    step()
    with flop_counter() as counter:
        step()
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    flops = counter.get_total_flops()
    peak = bf16_peak(device)
    return dict(
        seconds_per_step=s,
        examples_per_s=batch_size / s,
        flops_per_step=flops,
        achieved_flops_per_s=flops / s,
        mfu=flops / s / peak if peak else None,
    )


def adamw_step(model, loss_fn, device):
    "A closure: forward (autocast on CUDA), backward, AdamW step."
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        with autocast(device):
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def rotated_copies(raw, copies: int, seed: int = 0) -> list:
    "`copies` versions of a set of four-momenta (px, py, pz, E first), each rotated by a random azimuth per jet."
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(copies):
        a = (torch.rand(len(raw.x), 1, generator=g) * 2 - 1) * torch.pi
        x = raw.x.clone()
        x[..., 0] = torch.cos(a) * raw.x[..., 0] - torch.sin(a) * raw.x[..., 1]
        x[..., 1] = torch.sin(a) * raw.x[..., 0] + torch.cos(a) * raw.x[..., 1]
        out.append(type(raw)(x, raw.mask, raw.labels, {}, raw.feature_names))
    return out


def jet_module(tmp: Path, copies: int, spec, batch_size: int, workers: int) -> StreamingDataModule:
    "HDF5 shards of the 500 shared real JetClass jets (rotated copies), read back through the spec."
    raw = load_jetclass_npy()
    files = [write_h5_shard(tmp / f'jets_{i}.h5', c) for i, c in enumerate(rotated_copies(raw, copies))]
    reader = dict(chunk_size=2_000)
    return StreamingDataModule(
        train_files=files,
        reader_kwargs=reader,
        transform=spec,
        batch_size=batch_size,
        num_workers=workers,
        shuffle_buffer=4_000,
    )


def adc2021_rows(n: int, seed: int = 0) -> np.ndarray:
    "Random events in the ADC2021 slot layout: MET, 0-4 electrons, 0-4 muons, 0-10 jets, pT-ordered per group."
    rng = np.random.default_rng(seed)
    p = np.zeros((n, 19, 4), np.float32)
    p[:, 0] = np.stack([rng.exponential(30, n), np.zeros(n), rng.uniform(-np.pi, np.pi, n), np.ones(n)], -1)
    for lo, hi, mean in ((1, 5, 15.0), (5, 9, 15.0), (9, 19, 40.0)):
        k = rng.integers(0, hi - lo + 1, n)
        filled = np.arange(hi - lo) < k[:, None]
        pt = -np.sort(-rng.exponential(mean, (n, hi - lo)), 1) + 1.0
        p[:, lo:hi, 0] = np.where(filled, pt, 0)
        p[:, lo:hi, 1] = np.where(filled, rng.uniform(-2.5, 2.5, (n, hi - lo)), 0)
        p[:, lo:hi, 2] = np.where(filled, rng.uniform(-np.pi, np.pi, (n, hi - lo)), 0)
        p[:, lo:hi, 3] = np.where(filled, ADC2021_SLOT_TYPES[lo], 0)
    return p


def pipeline_tokenizer(tmp, device, workers):
    from foundation_jets.tokenize.tokenizers import VQVAETokenizer

    dm = jet_module(tmp, 8, omnijet_spec(), 512, workers)
    model = VQVAETokenizer().to(device).train()  # reference: 4 x 128 x 8 heads, latent 4, K = 8192
    return dm, model, lambda b: model(b.x, b.mask).loss, 'jets'


def pipeline_part(tmp, device, workers):
    from foundation_jets.models.part import ParticleTransformer

    dm = jet_module(tmp, 8, partial(part_inputs, kind='kin'), 64, workers)
    model = ParticleTransformer(input_dim=7, num_classes=10).to(device).train()  # reference: 8 x 128, pair 64-64-64
    return dm, model, lambda b: F.cross_entropy(model(b.x, b.meta['p4'], b.mask), b.labels.long()), 'jets'


def pipeline_gpt(tmp, device, workers):
    from foundation_jets.models.gpt import GPTLanguageModel
    from foundation_jets.tokenize.sentences import TokenDataModule, TokenSentences

    n, length = 16_384, 130
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, length + 1, (n, 1), generator=g)
    mask = torch.arange(length) < lengths
    tokens = torch.where(mask, torch.randint(1, 8194, (n, length), generator=g), 0)
    dm = TokenDataModule(TokenSentences(tokens, mask), val_fraction=0.0, batch_size=64)
    model = GPTLanguageModel(8194).to(device).train()  # reference: 3 x 256 x 8 heads
    return dm, model, lambda b: model.loss(b['tokens'], b['mask']), 'sentences'


def pipeline_mae(tmp, device, workers):
    from foundation_jets.data.detectors import read_pilarnet
    from foundation_jets.data.features import pilarnet_spec
    from foundation_jets.models.mae import PoLArMAE, PointTokenizer
    from foundation_jets.simulate.lartpc import write_lartpc
    from foundation_jets.tasks.mae import MaskedPointTask

    files = [write_lartpc(tmp / f'lartpc_{i}.h5', 40, seed=i) for i in range(2)]
    dm = StreamingDataModule(
        train_files=files,
        read_chunks=read_pilarnet,
        reader_kwargs=dict(chunk_size=8, drop_les=True),
        transform=pilarnet_spec(),
        batch_size=8,
        num_workers=workers,
        shuffle_buffer=32,
    )
    task = MaskedPointTask(PoLArMAE(), tokenizer=PointTokenizer(), scheduler=None).to(device).train()  # ViT-S
    return dm, task, lambda b: task.training_step((b.x.to(device), b.mask.to(device)), 0), 'events'


def adc2021_event_inputs(sets, spec):
    "Reader chunk (raw ADC2021 rows in x) -> the event model's inputs (`models.events.event_inputs`)."
    from foundation_jets.models.events import event_inputs

    return event_inputs(sets.x, spec)


def pipeline_event(tmp, device, workers):
    from foundation_jets.models.events import EventTransformer
    from foundation_jets.tasks.events import MaskedObjectTask

    rows = [adc2021_rows(20_000, seed=i) for i in range(2)]
    files = [write_adc2021_h5(tmp / f'adc2021_{i}.h5', r) for i, r in enumerate(rows)]
    spec = adc2021_spec().fit(adc2021_sets(rows[0]))
    dm = StreamingDataModule(
        train_files=files,
        read_chunks=read_adc2021,
        reader_kwargs=dict(chunk_size=4_096, features=('pt', 'eta', 'phi', 'type'), extra_meta=False),
        transform=partial(adc2021_event_inputs, spec=spec),
        batch_size=1_024,
        num_workers=workers,
        shuffle_buffer=8_192,
    )
    task = MaskedObjectTask(EventTransformer(input_dim=len(spec.feature_names) + 1), spec).to(device).train()
    return dm, task, lambda b: task.losses(b.meta['particles'], b.mask)['loss'], 'events'


def pipeline_jepa(tmp, device, workers):
    from foundation_jets.simulate.tracks import TrackingConfig, compact_barrel2d, simulate_barrel2d
    from foundation_jets.tasks.jepa import JEPATask

    config = TrackingConfig(n_particles=(625, 625), pt_range=(0.5, 5.0))  # ~5k hits per event
    files = [write_h5_shard(tmp / f'hits_{i}.h5', compact_barrel2d(simulate_barrel2d(16, i, config))) for i in range(2)]
    dm = StreamingDataModule(
        train_files=files, reader_kwargs=dict(chunk_size=8), batch_size=8, num_workers=workers, shuffle_buffer=16
    )
    task = JEPATask({'frequencies': 6}, r_range=(50.0, 300.0), max_hits=1024).to(device).train()
    generator = torch.Generator(device=device).manual_seed(0)
    return dm, task, lambda b: task.jepa_step(b, generator)['loss'], 'events'


PIPELINES = {
    'tokenizer': pipeline_tokenizer,
    'gpt': pipeline_gpt,
    'part': pipeline_part,
    'mae': pipeline_mae,
    'event': pipeline_event,
    'jepa': pipeline_jepa,
}


def measure(name: str, device, workers: int, steps: int, max_examples: int) -> dict:
    "Loader and model rates of one pipeline, and their ratio."
    seed_everything(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        dm, model, loss_fn, unit = PIPELINES[name](Path(tmp), device, workers)
        setup_s = time.perf_counter() - t0
        loader = loader_rate(dm, max_examples)
        batch = loader.pop('first')
        batch = (
            batch.to(device) if hasattr(batch, 'to') else {k: v.to(device) for k, v in batch.items() if v is not None}
        )
        model_rate = step_rate(
            adamw_step(model, lambda: loss_fn(batch), device), len(batch_size_of(batch)), steps, device
        )
    return dict(
        unit=unit,
        batch_size=len(batch_size_of(batch)),
        parameters=sum(p.numel() for p in model.parameters()),
        loader=loader,
        model=model_rate,
        ratio=loader['examples_per_s'] / model_rate['examples_per_s'],
        setup_s=setup_s,
    )


def batch_size_of(batch):
    return batch['tokens'] if isinstance(batch, dict) else batch.x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default=None, help='cpu, cuda, ... (default: best available)')
    ap.add_argument('--workers', type=int, default=2, help='DataLoader worker processes')
    ap.add_argument('--steps', type=int, default=2, help='timed training steps per model (after one warm-up)')
    ap.add_argument('--examples', type=int, default=8_192, help='examples drawn from each loader at most')
    ap.add_argument('--threads', type=int, default=1, help='torch threads of the model step (0: torch default)')
    ap.add_argument('--only', nargs='*', choices=sorted(PIPELINES), help='a subset of the pipelines')
    ap.add_argument('--out', default=str(HERE / 'results' / 'throughput.json'))
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device) if a.device else get_device()
    load0 = os.getloadavg()
    rows = {}
    for name in a.only or PIPELINES:
        rows[name] = measure(name, device, a.workers, a.steps, a.examples)
        r = rows[name]
        print(
            f"{name:<10} loader {r['loader']['examples_per_s']:>10,.0f} {r['unit']}/s | model "
            f"{r['model']['examples_per_s']:>9,.1f} {r['unit']}/s | ratio {r['ratio']:>8,.1f}",
            flush=True,
        )
    res = dict(
        machine=machine_info(load0, device),
        settings=dict(workers=a.workers, steps=a.steps, examples=a.examples, target_ratio=TARGET_RATIO),
        pipelines=rows,
        all_above_target=all(r['ratio'] >= TARGET_RATIO for r in rows.values()),
    )
    peak = bf16_peak(device)
    print(
        f"\nloader vs model on {device} ({'bf16 autocast' if device.type == 'cuda' else 'fp32'}), {a.workers} workers"
    )
    print(
        f"  {'pipeline':<10} {'params':>8} {'batch':>6} {'loader/s':>10} {'model/s':>9} {'ratio':>8}"
        f" {'GFLOP/s':>9} {'MFU':>6}"
    )
    for name, r in rows.items():
        m = r['model']
        mfu = f"{m['mfu']:.1%}" if m['mfu'] is not None else 'n/a'
        print(
            f"  {name:<10} {r['parameters'] / 1e6:>7.1f}M {r['batch_size']:>6} {r['loader']['examples_per_s']:>10,.0f}"
            f" {m['examples_per_s']:>9,.1f} {r['ratio']:>7,.1f}x {m['achieved_flops_per_s'] / 1e9:>9,.1f} {mfu:>6}"
        )
    print(f"  target: loader >= {TARGET_RATIO:g}x model; met: {res['all_above_target']}; bf16 peak: {peak or 'n/a'}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(res, indent=1) + '\n')
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
