"""Two gloo processes train every task exactly as one process on the same global batch (issue 18, must-have 1).

Each test trains a tiny model of one task twice from the same initial weights: once in this process, once under
`ddp_spawn` with two CPU processes, through `tasks.core.fit`. Under DDP Lightning gives rank r the rows
perm[r::2] of the epoch's permutation (a `DistributedSampler` seeded with PL_GLOBAL_SEED), in batches of 8. The
single process reads the same permutation in batches of 16 whose rows are rank 0's 8 then rank 1's 8
(`RankOrder`): the global batch, in the order the processes' rows are gathered. Plain SGD, so a difference in a
gradient shows up in the weights one to one. Every test also checks that training moved the weights, so that two
untrained models cannot pass, and compares buffers too (BatchNorm running statistics, LRU counters, EMA targets).
"""

import os

import pytest
import torch
import lightning as L
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from foundation_jets.core import ParticleSet, collate_sets, seed_everything
from foundation_jets.data.modules import SetDataset
from foundation_jets.tasks.core import fit
from foundation_jets.toys import ring_sets

WORLD, LOCAL = 2, 8  # processes, sets per process and step
GLOBAL = WORLD * LOCAL


class OneThread(L.Callback):
    "Keep each spawned worker on one core (the test machine is shared)."

    def setup(self, trainer, pl_module, stage):
        torch.set_num_threads(1)


class RankOrder(Sampler):
    "Batches of the global size whose rows are, rank after rank, what each DDP process reads at that step."

    def __init__(self, n: int, seed: int = 0):
        self.sampler = DistributedSampler(range(n), num_replicas=1, rank=0, shuffle=True, seed=seed)

    def __len__(self):
        return -(-len(self.sampler) // GLOBAL)

    def __iter__(self):
        perm = list(self.sampler)  # the permutation every rank draws from (set_epoch'ed by `fit`)
        for k in range(0, len(perm), GLOBAL):
            block = perm[k : k + GLOBAL]
            yield [i for r in range(WORLD) for i in block[r::WORLD]]


def state(task) -> dict:
    return {k: v.detach().clone() for k, v in task.state_dict().items()}


def assert_same(a: dict, b: dict, atol: float = 1e-6):
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m: f'{k}: {m}')
        else:
            assert torch.equal(a[k], b[k]), f'{k}: {a[k]} != {b[k]}'


def moved(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())


def one_vs_two(monkeypatch, make_task, dataset, collate, epochs=2, atol=1e-6, watch=(), **fit_kwargs) -> tuple:
    "Train `make_task()` in one process and in two; returns (single task, DDP task, initial state)."
    # `watch`: callbacks of the single-process run only (they observe it)
    monkeypatch.setenv('PL_GLOBAL_SEED', '0')
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    assert len(dataset) % GLOBAL == 0  # no padded last batch
    single = make_task()
    init = state(single)
    loader = DataLoader(dataset, batch_sampler=RankOrder(len(dataset)), collate_fn=collate)
    fit(single, loader, epochs=epochs, device='cpu', callbacks=[OneThread(), *watch], **fit_kwargs)
    ddp = make_task()
    assert_same(state(ddp), init, atol=0)
    loader = DataLoader(dataset, batch_size=LOCAL, shuffle=True, collate_fn=collate)
    fit(ddp, loader, epochs=epochs, device='cpu', devices=WORLD, strategy='ddp_spawn', callbacks=[OneThread()],
        **fit_kwargs)  # fmt: skip
    after = state(single)
    assert moved(after, init) > 1e-3  # the run trained
    assert_same(state(ddp), after, atol=atol)
    return single, ddp, init


# ---------------------------------------------------------------- tokenizer


class Replacements(L.Callback):
    "Count the quantizer's dead-code replacements of a run (so the test knows they happened)."

    def __init__(self):
        self.n = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        q = pl_module.tokenizer.quantizer
        self.n += int((q.lru_counter <= 0).sum())


def _tokenizer_task():
    from foundation_jets.tasks.tokenizer import TokenizerTask
    from foundation_jets.tokenize.tokenizers import MLPTokenizer

    seed_everything(0)
    vq = dict(replace_after=2, kmeans_iters=3, seed=5)
    tok = MLPTokenizer(num_features=2, hidden=[16, 8], latent_dim=2, num_codes=48, alpha=1.0, vq_kwargs=vq)
    return TokenizerTask(tok, lr=0.1, weight_decay=0.0, optimizer='sgd', scheduler=None)


def test_tokenizer(monkeypatch):
    # k-means initialisation and dead-code replacement on the gathered latents, usage counts summed over the
    # processes, and every loss a mean over the real constituents of the global batch (sets of 5-20 points).
    count = Replacements()
    sets = SetDataset(ring_sets(64, seed=3, min_points=3, max_points=8))
    single, ddp, init = one_vs_two(monkeypatch, _tokenizer_task, sets, collate_sets, epochs=3, watch=[count])
    q = single.tokenizer.quantizer
    assert bool(q.initialised) and int(q.steps) == 12
    assert count.n > 0  # codes died and were replaced during the run
    assert not torch.equal(q.codebook.detach(), init['tokenizer.quantizer.codebook'])


# ---------------------------------------------------------------- GPT


class Sentences(Dataset):
    "Token sentences of different lengths, as the `TokenDataModule` batches them."

    def __init__(self, n: int, vocab: int = 12, length: int = 10, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(3, length + 1, (n,), generator=g)
        self.mask = torch.arange(length)[None] < lengths[:, None]
        self.tokens = torch.randint(1, vocab, (n, length), generator=g) * self.mask

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, i):
        return {'tokens': self.tokens[i], 'mask': self.mask[i]}


def _gpt_task():
    from foundation_jets.models.gpt import GPTLanguageModel
    from foundation_jets.tasks.pretrain import NextTokenTask

    seed_everything(0)
    model = GPTLanguageModel(12, dim=16, num_heads=2, num_layers=1, max_len=10)
    return NextTokenTask(model, lr=0.3, weight_decay=0.0, optimizer='sgd', scheduler=None)


def test_gpt(monkeypatch):
    # the two processes hold different numbers of real targets: the loss is a mean over the global count
    one_vs_two(monkeypatch, _gpt_task, Sentences(64), None, epochs=2)


# ---------------------------------------------------------------- ParT


def _jets(n: int, seed: int = 0) -> ParticleSet:
    "Jets of 3-12 massless constituents: features (log pT, eta, phi), four-momenta in meta['p4'], two classes."
    g = torch.Generator().manual_seed(seed)
    N = 12
    mask = torch.arange(N)[None] < torch.randint(3, N + 1, (n,), generator=g)[:, None]
    labels = torch.randint(0, 2, (n,), generator=g)
    pt = torch.rand(n, N, generator=g).mul(20).add(1) * (1 + labels[:, None])
    eta, phi = torch.randn(n, N, generator=g) * 0.3, torch.randn(n, N, generator=g) * 0.3
    p4 = torch.stack([pt * phi.cos(), pt * phi.sin(), pt * eta.sinh(), pt * eta.cosh()], -1) * mask[..., None]
    x = torch.stack([pt.log(), eta, phi], -1) * mask[..., None]
    return ParticleSet(x.double(), mask, labels, {'p4': p4.double()})


def _part_task():
    from foundation_jets.models.part import ParticleTransformer
    from foundation_jets.tasks.classifier import SetClassifier

    seed_everything(0)
    model = ParticleTransformer(
        input_dim=3, num_classes=2, embed_dims=(16, 16), pair_embed_dims=(8, 8), num_heads=2, num_layers=1,
        num_cls_layers=1, mlp_ratio=2, dropout=0.0, attn_dropout=0.0, trim=False,
    )  # fmt: skip
    task = SetClassifier(model, lr=0.1, weight_decay=0.0, optimizer='sgd', scheduler=None, inputs=('p4',))
    return task.double()


def test_part(monkeypatch):
    # ParT's BatchNorms (particle and pair embeddings, `GlobalBatchNorm1d`) normalise over the real particles and
    # pairs of the global batch; their running statistics are compared too. Float64: in float32 the running mean
    # of the pair BatchNorm differed by 2.4e-6 (relative 1.5e-6), the rounding of summing a few hundred pair rows
    # in two partial sums rather than one.
    single, ddp, init = one_vs_two(monkeypatch, _part_task, SetDataset(_jets(64)), collate_sets, epochs=2)
    bn = 'model.backbone.embed.input_norm.running_mean'
    assert bn in init and moved({bn: state(single)[bn]}, {bn: init[bn]}) > 1e-3


# ---------------------------------------------------------------- MAE


class PointTokens(Dataset):
    "Pre-tokenised point-cloud events: 3-8 real tokens of 1-4 real points each (x, y, z, energy)."

    def __init__(self, n: int, T: int = 8, K: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.mask = torch.arange(T)[None] < torch.randint(3, T + 1, (n,), generator=g)[:, None]
        points = torch.arange(K)[None, None] < torch.randint(1, K + 1, (n, T), generator=g)[..., None]
        self.point_mask = points & self.mask[..., None]
        self.groups = torch.randn(n, T, K, 4, generator=g) * self.point_mask[..., None]
        self.centers = torch.randn(n, T, 3, generator=g) * self.mask[..., None]

    def __len__(self):
        return len(self.mask)

    def __getitem__(self, i):
        keys = ('groups', 'point_mask', 'centers', 'mask')
        return {k: getattr(self, k)[i] for k in keys}


def _mae_task():
    from foundation_jets.models.mae import PoLArMAE
    from foundation_jets.tasks.mae import MaskedPointTask

    seed_everything(0)
    model = PoLArMAE(
        in_channels=4, dim=16, depth=1, num_heads=2, decoder_depth=1, group_size=4, mask_ratio=0.5, mlp_ratio=2.0,
        order_dim=8, pointnet_widths=(8, 8, 8),
    )  # fmt: skip
    return MaskedPointTask(model, rotate=True, lr=0.02, weight_decay=0.0, optimizer='sgd', scheduler=None)


def test_mae(monkeypatch):
    # rotations and masks drawn for the global batch from a (seed, epoch, batch) generator; the Chamfer and energy
    # means over the masked tokens and hidden points of the global batch
    one_vs_two(monkeypatch, _mae_task, PointTokens(64), None, epochs=2)


# ---------------------------------------------------------------- JEPA


def _hits(n: int, seed: int = 0) -> ParticleSet:
    "Events of 20-40 hits (x, y) at radii 1-10 around the origin."
    g = torch.Generator().manual_seed(seed)
    N = 40
    mask = torch.arange(N)[None] < torch.randint(20, N + 1, (n,), generator=g)[:, None]
    r = 1 + 9 * torch.rand(n, N, generator=g)
    phi = (torch.rand(n, N, generator=g) * 2 - 1) * torch.pi
    x = torch.stack([r * phi.cos(), r * phi.sin()], -1) * mask[..., None]
    return ParticleSet(x, mask)


def _jepa_task():
    from foundation_jets.tasks.jepa import JEPATask

    seed_everything(0)
    encoder = dict(input_dim=2, dim=16, d_ff=16, num_heads=2, num_layers=1)
    return JEPATask(
        encoder, d_embedding=8, aggregator_layers=1, predictor_hidden=16, ema_momentum=0.9, r_range=(0.0, 10.0),
        max_hits=6, lr=0.2, weight_decay=0.0, optimizer='sgd', scheduler=None,
    )  # fmt: skip


def test_jepa(monkeypatch):
    # wedge regions (and the max_hits subsampling) drawn for the global batch from a (seed, epoch, batch) generator;
    # the loss a mean over the valid events of the global batch; the EMA target (in the state dict) compared too
    single, ddp, init = one_vs_two(monkeypatch, _jepa_task, SetDataset(_hits(64)), collate_sets, epochs=2)
    ema = [k for k in init if k.startswith('target_encoder.')]
    assert ema and moved({k: state(single)[k] for k in ema}, {k: init[k] for k in ema}) > 1e-4


# ---------------------------------------------------------------- event model


@pytest.fixture(scope='module')
def l1_events():
    "64 background events of the embedded L1 sample (raw rows, mask) and a spec fitted on them."
    from foundation_jets.core import data_dir
    from foundation_jets.data.detectors import ADC2021_FEATURES, load_adc2021
    from foundation_jets.data.features import adc2021_sets, adc2021_spec
    from foundation_jets.models.events import event_inputs

    rows = load_adc2021(data_dir() / 'l1' / 'background.h5', features=ADC2021_FEATURES, stop=64).x
    spec = adc2021_spec().fit(adc2021_sets(rows))
    sets = event_inputs(rows, spec, file='background.h5')
    return torch.utils.data.TensorDataset(sets.meta['particles'].double(), sets.mask), spec


SMALL_EVENTS = dict(embed_dims=(16, 16), pair_embed_dims=(8, 8), num_heads=2, num_layers=1, mlp_ratio=2,
                    dropout=0.0, attn_dropout=0.0)  # fmt: skip


def _masked_object_task(spec):
    from foundation_jets.models.events import EventTransformer
    from foundation_jets.tasks.events import MaskedObjectTask

    seed_everything(0)
    backbone = EventTransformer(len(spec.feature_names) + 1, **SMALL_EVENTS)
    return MaskedObjectTask(backbone, spec, lr=0.1, weight_decay=0.0, optimizer='sgd', scheduler=None).double()


def _contrastive_task(spec):
    from foundation_jets.models.events import EventTransformer
    from foundation_jets.tasks.events import ContrastiveTask

    seed_everything(0)
    backbone = EventTransformer(len(spec.feature_names), **SMALL_EVENTS)
    return ContrastiveTask(backbone, spec, lr=0.1, weight_decay=0.0, optimizer='sgd', scheduler=None).double()


def test_event_masked_objects(monkeypatch, l1_events):
    # hidden objects drawn for the global batch; both losses means over the global hidden objects; the embeddings'
    # BatchNorms over the global batch
    data, spec = l1_events
    one_vs_two(monkeypatch, lambda: _masked_object_task(spec), data, None, epochs=2)


def test_event_contrastive(monkeypatch, l1_events):
    # augmented views drawn for the global batch; NT-Xent over the projections of every process (gathered with
    # their gradient), so the negatives are those of the whole global batch
    data, spec = l1_events
    one_vs_two(monkeypatch, lambda: _contrastive_task(spec), data, None, epochs=2)


# ---------------------------------------------------------------- uneven shards

UNEVEN = r"""
import json, sys
import torch, lightning as L
from foundation_jets.core import seed_everything
from foundation_jets.data.modules import StreamingDataModule
from foundation_jets.models.deepsets import DeepSets
from foundation_jets.tasks.classifier import SetClassifier
from foundation_jets.tasks.core import fit

class Seen(L.Callback):
    "Write the ids of every training batch this rank trains on."
    def __init__(self, out):
        self.out = out
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(f'{self.out}/rank{trainer.global_rank}.jsonl', 'a') as f:
            f.write(json.dumps([trainer.current_epoch, batch.meta['id'].tolist()]) + '\n')

if __name__ == '__main__':
    torch.set_num_threads(1)
    out, val, files = sys.argv[1], sys.argv[2:4], sys.argv[4:]
    seed_everything(0)
    task = SetClassifier(DeepSets(num_features=2, num_classes=2, phi_dims=[8], f_dims=[8]), lr=0.1,
                         optimizer='sgd', scheduler=None, weight_decay=0.0)
    dm = StreamingDataModule(train_files=files, val_files=val, batch_size=8, shuffle_buffer=0, seed=0)
    fit(task, dm, epochs=2, device='cpu', devices=2, strategy='ddp_spawn', callbacks=[Seen(out)])
"""


def test_uneven_shards_through_fit(tmp_path):
    # A task trained through `fit` on `StreamingDataModule` files of 40 and 24 sets, one file per process: 5
    # batches against 3. (tests/test_uneven.py checks the loader's policies with bare processes; this is the
    # harness end to end.) The run must end (a stalled rank fails the timeout), both processes take the same
    # number of steps, and the default policy 'repeat' holds: every set at least once per epoch, the shorter
    # share read again from its start for the missing steps.
    import json
    import signal
    import subprocess
    import sys

    from foundation_jets.data.modules import write_h5_shard

    sets = ring_sets(80, seed=1)
    sets.meta['id'] = torch.arange(80)
    files = [str(write_h5_shard(tmp_path / n, part)) for n, part in (('a.h5', sets[:40]), ('b.h5', sets[40:64]))]
    val = [str(write_h5_shard(tmp_path / f'val{i}.h5', sets[64 + 8 * i : 72 + 8 * i])) for i in (0, 1)]
    script = tmp_path / 'uneven.py'
    script.write_text(UNEVEN)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    cmd = [sys.executable, str(script), str(tmp_path), *val, *files]
    run = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        _, stderr = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # a stalled rank: end the whole run, its DDP workers included
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail('the two-process run stalled (no result within 120 s)')
    assert run.returncode == 0, stderr[-3000:]
    rows = {r: [json.loads(line) for line in (tmp_path / f'rank{r}.jsonl').read_text().splitlines()] for r in (0, 1)}
    for epoch in (0, 1):
        batches = {r: [b for e, b in rows[r] if e == epoch] for r in (0, 1)}
        assert [len(batches[0]), len(batches[1])] == [5, 5]  # the longer share sets the steps
        ids = [i for r in (0, 1) for b in batches[r] for i in b]
        assert set(ids) == set(range(64))  # every training set at least once
        assert len(ids) - len(set(ids)) == 2 * 8  # two batches of the shorter share read again


# ---------------------------------------------------------------- the helpers, in two bare gloo processes


def _helpers_worker(rank: int, port: int, folder: str):
    import torch.distributed as dist

    from foundation_jets.models.part import GlobalBatchNorm1d
    from foundation_jets.tasks.core import gather_with_grad
    from foundation_jets.tokenize.quantizer import all_gather_rows, all_reduce_sum, global_mean

    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=WORLD)
    data = _helper_data()
    mine = data[rank]
    out = {'offset': all_gather_rows(mine['rows'])[1], 'rows': all_gather_rows(mine['rows'])[0]}
    out['flags'] = all_gather_rows(mine['flags'])[0]
    out['sum'] = all_reduce_sum(torch.tensor([len(mine['x'])]))
    w = torch.nn.Parameter(torch.tensor([1.5, -0.5]))  # the same weights on both processes
    mean = global_mean((mine['x'] * w).pow(2).sum(1).mean(), len(mine['x']))
    (grad,) = torch.autograd.grad(mean, w)
    out['mean_grad'] = all_reduce_sum(grad) / WORLD  # what DDP's average makes of it
    z = gather_with_grad(mine['x'] * w)
    (grad,) = torch.autograd.grad(torch.logsumexp(z @ z.T, 1).mean(), w)  # every row against every row
    out['pair_grad'] = all_reduce_sum(grad) / WORLD
    torch.manual_seed(0)
    bn = GlobalBatchNorm1d(2)
    y = bn(mine['x'] * w)
    (grad,) = torch.autograd.grad((y * torch.arange(1.0, 3.0)).pow(3).sum() / 6, w)
    bn_grad = all_reduce_sum(grad)  # a sum over rows: the gradient of the sum of the processes' losses
    out.update(bn_out=y.detach(), bn_grad=bn_grad, bn_mean=bn.running_mean, bn_var=bn.running_var)
    torch.save(out, f'{folder}/rank{rank}.pt')
    dist.barrier()
    dist.destroy_process_group()


def _helper_data() -> list:
    g = torch.Generator().manual_seed(0)
    rows = [torch.randn(2, 3, generator=g), torch.randn(4, 5, generator=g)]  # different lengths and widths
    flags = [torch.tensor([[True], [False]]), torch.tensor([[False, True], [True, True], [False, False]])]
    xs = [torch.randn(3, 2, generator=g), torch.randn(6, 2, generator=g) + 1]  # 3 rows against 6
    return [{'rows': r, 'flags': f, 'x': x} for r, f, x in zip(rows, flags, xs)]


def test_distributed_helpers(tmp_path):
    # each helper in two processes against the same computation in one process on the concatenated rows
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.start_processes(_helpers_worker, args=(port, str(tmp_path)), nprocs=WORLD, start_method='spawn')
    res = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(WORLD)]
    data = _helper_data()
    assert [r['offset'] for r in res] == [0, 2]
    rows = torch.zeros(6, 5)
    rows[:2, :3], rows[2:] = data[0]['rows'], data[1]['rows']
    flags = torch.zeros(5, 2, dtype=torch.bool)
    flags[:2, :1], flags[2:] = data[0]['flags'], data[1]['flags']
    x = torch.cat([data[0]['x'], data[1]['x']])
    w = torch.nn.Parameter(torch.tensor([1.5, -0.5]))
    (mean_grad,) = torch.autograd.grad((x * w).pow(2).sum(1).mean(), w)
    z = x * w
    (pair_grad,) = torch.autograd.grad(torch.logsumexp(z @ z.T, 1).mean(), w)
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(2)
    y = bn(x * w)
    (bn_grad,) = torch.autograd.grad((y * torch.arange(1.0, 3.0)).pow(3).sum() / 6, w)
    for r in res:
        torch.testing.assert_close(r['rows'], rows, atol=0, rtol=0)
        assert r['flags'].dtype == torch.bool and torch.equal(r['flags'], flags)
        assert int(r['sum']) == 9
        torch.testing.assert_close(r['mean_grad'], mean_grad, atol=1e-6, rtol=0)
        torch.testing.assert_close(r['pair_grad'], pair_grad, atol=1e-6, rtol=0)
        torch.testing.assert_close(r['bn_grad'], bn_grad, atol=1e-6, rtol=0)
        torch.testing.assert_close(r['bn_mean'], bn.running_mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(r['bn_var'], bn.running_var, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.cat([r['bn_out'] for r in res]), y.detach(), atol=1e-6, rtol=0)
