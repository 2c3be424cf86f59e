"""Generation and training throughput of the OmniJet-α-size GPT backbone (`foundation_jets.models.gpt`).

Measures, with the same weights in one run:
- generation jets/s with the KV cache (`generate(..., use_cache=True)`: the head on the newest position only);
- generation jets/s with full recomputation (`use_cache=False`: every step runs the whole prefix and applies the
  head to every position, as the reference `generate_batch` does);
- their ratio, and the fraction of jets whose tokens are identical in both paths (same seeded random stream; the two
  paths compute the logits with different kernels, so they differ by ~1e-6, and with 8194 nearly uniform ids an
  inverse-CDF draw now and then lands on the other side of a boundary, after which that jet diverges);
- backbone training tokens/s (forward + backward + AdamW step of `GPTLanguageModel.loss`).
Both generation paths sample exactly `--tokens` ids per jet (no stop token, so no early exit) from an untrained
model at the reference size: 3 blocks x 256 wide x 8 heads, vocabulary 8194 (8192 codes + start + stop).
Default batch 64 (CPU run of a couple of minutes); `--batch 256` is the reference comparison (the reference
sampled about 0.9 jets/s at batch 256 on a 2-core CPU). The machine's load average is recorded: on a shared box
absolute rates drop. By default torch uses one thread: on the shared 2-core box two threads spend most of their time
waiting for each other (the small per-step matmuls of the cached path suffered 5-10x); `--threads 0` keeps torch's
default. Results go to bench/results/generation.json.

    python bench/bench_generation.py [--batch 64] [--tokens 128] [--threads 1] [--device cpu|cuda] [--out ...]
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

from foundation_jets.core import atomic_write_text, autocast, get_device, seed_everything
from foundation_jets.models.gpt import GPTLanguageModel, generate

HERE = Path(__file__).resolve().parent


def sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_generation(lm, device, batch: int, tokens: int, use_cache: bool, seed: int = 0):
    "Seconds for one batch of `tokens` sampled ids, and the tokens."
    gen = torch.Generator(device=device).manual_seed(seed)
    with autocast(device):
        generate(lm, batch, 2, use_cache=use_cache, generator=gen)  # warm-up
    gen = torch.Generator(device=device).manual_seed(seed)
    sync(device)
    t0 = time.perf_counter()
    with autocast(device):
        out = generate(lm, batch, tokens, use_cache=use_cache, generator=gen)
    sync(device)
    return time.perf_counter() - t0, out.tokens


def time_training(lm, device, batch: int, tokens: int, steps: int) -> float:
    "Target tokens per second of forward + backward + AdamW on random sentences of `tokens` + 1 ids."
    lm.train()
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-3, weight_decay=1e-2)
    x = torch.randint(0, lm.vocab_size, (batch, tokens + 1), device=device)
    mask = torch.ones_like(x, dtype=torch.bool)

    def step():
        with autocast(device):
            loss = lm.loss(x, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    lm.eval()
    return batch * tokens * steps / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch', type=int, default=64, help='jets per generation batch (reference comparison: 256)')
    p.add_argument('--tokens', type=int, default=128, help='ids sampled per jet')
    p.add_argument('--train-batch', type=int, default=64, help='sentences per training step')
    p.add_argument('--train-steps', type=int, default=3, help='timed training steps')
    p.add_argument('--device', default=None, help='cpu, cuda, ... (default: best available)')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads (0: torch default)')
    p.add_argument('--out', default=str(HERE / 'results' / 'generation.json'))
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = get_device(a.device)
    seed_everything(0)
    lm = GPTLanguageModel(8194).to(device).eval()  # reference size: 3 x 256 x 8 heads
    n_params = sum(q.numel() for q in lm.parameters())
    load0 = os.getloadavg()[0]
    t_cache, tok_cache = time_generation(lm, device, a.batch, a.tokens, True)
    print(f'KV cache:        {a.batch / t_cache:8.2f} jets/s ({t_cache:.1f} s)', flush=True)
    t_full, tok_full = time_generation(lm, device, a.batch, a.tokens, False)
    print(f'full recompute:  {a.batch / t_full:8.2f} jets/s ({t_full:.1f} s)', flush=True)
    train_rate = time_training(lm, device, a.train_batch, a.tokens, a.train_steps)
    res = dict(
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor(),
        precision='bf16 autocast' if device.type == 'cuda' else 'fp32',
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpus=os.cpu_count(),
        loadavg_start=load0,
        loadavg_end=os.getloadavg()[0],
        python=sys.version.split()[0],
        model=dict(vocab_size=8194, dim=256, num_heads=8, num_layers=3, positional='learned', parameters=n_params),
        batch=a.batch,
        tokens=a.tokens,
        kv_cache_jets_per_s=a.batch / t_cache,
        kv_cache_seconds=t_cache,
        full_recompute_jets_per_s=a.batch / t_full,
        full_recompute_seconds=t_full,
        speedup=t_full / t_cache,
        identical_jets_fraction=float((tok_cache == tok_full).all(1).float().mean()),
        train_batch=a.train_batch,
        train_steps=a.train_steps,
        train_tokens_per_s=train_rate,
    )
    rows = [
        ('generation, KV cache', f"{res['kv_cache_jets_per_s']:.2f} jets/s"),
        ('generation, full recompute', f"{res['full_recompute_jets_per_s']:.2f} jets/s"),
        ('ratio cache / full', f"{res['speedup']:.1f}x"),
        ('jets with identical tokens', f"{res['identical_jets_fraction']:.3f}"),
        ('training', f'{train_rate:,.0f} tokens/s'),
    ]
    print(
        f"\nGPT 3x256x8, vocab 8194, batch {a.batch}, {a.tokens} tokens, {res['device']} ({res['precision']}), "
        f"{res['threads']} threads, load {load0:.1f} -> {res['loadavg_end']:.1f}"
    )
    for k, v in rows:
        print(f'  {k:<28} {v:>16}')
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(res, indent=2) + '\n')
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
