"""DDP with uneven shards (data.modules.StreamingDataModule, `uneven=`): two gloo processes whose shards hold
different numbers of batches take the same number of training steps (no rank waits at an all-reduce forever),
'repeat' delivers every example at least once, 'stop' ends at the shortest shard and counts what it skipped, and a
rank with no data makes every rank fail with the same error. Real processes, real all-reduces; CPU only."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from foundation_jets.core import pad_sets
from foundation_jets.data.modules import StreamingDataModule, write_h5_shard


def write_files(folder: Path, sizes) -> list:
    "One shard per size; example ids are global and consecutive."
    files, start = [], 0
    for i, n in enumerate(sizes):
        sets = pad_sets([np.ones((2, 1), np.float32)] * n, meta={'id': np.arange(start, start + n)})
        files.append(str(write_h5_shard(folder / f'f{i}.h5', sets)))
        start += n
    return files


SCENARIOS = {  # name: (shard sizes, uneven policy, shard mode)
    'repeat': ([24, 8], 'repeat', 'files'),  # rank shards of 6 and 2 batches
    'stop': ([24, 8], 'stop', 'files'),
    'empty': ([24], 'repeat', 'files'),  # one file, two ranks: rank 1 has nothing
    'auto_repeat': ([24], 'repeat', 'auto'),  # 6 chunks of 4 dealt out: 3 batches each
    'auto_stop': ([24], 'stop', 'auto'),
    'val_uneven': ([24, 8], 'val', 'files'),  # validation: 6 and 2 batches are fine, no gradient is exchanged
    'val_empty': ([24], 'val', 'files'),  # validation with nothing on rank 1: an error on both, not a hang
}


def one_scenario(folder: Path, sizes, uneven, shard) -> dict:
    files = write_files(folder, sizes)
    policy = 'repeat' if uneven == 'val' else uneven
    dm = StreamingDataModule(
        train_files=None if uneven == 'val' else files,
        val_files=files if uneven == 'val' else None,
        reader_kwargs={'chunk_size': 4},
        batch_size=4,
        shuffle_buffer=0,
        shard=shard,
        uneven=policy,
    )
    loader = dm.val_dataloader() if uneven == 'val' else dm.train_dataloader()
    try:
        ids = []
        for batch in loader:
            ids.append(batch.meta['id'].tolist())
            if uneven != 'val':
                probe = torch.ones(1)
                dist.all_reduce(probe)  # as a DDP gradient all-reduce: mismatched step counts would hang or fail here
        return dict(ids=ids, repeated=loader.repeated_batches, skipped=loader.skipped_batches, n=sum(sizes))
    except Exception as e:  # noqa: BLE001 - reported to the test
        return dict(error=f'{type(e).__name__}: {e}')


def worker(rank, folder, port):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=2)
    results = {}
    for name, (sizes, uneven, shard) in SCENARIOS.items():
        sub = Path(folder, name)
        sub.mkdir(exist_ok=True)
        results[name] = one_scenario(sub, sizes, uneven, shard)
        dist.barrier()
    Path(folder, f'{rank}.json').write_text(json.dumps(results))
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    "Both ranks' results of every scenario, from one pair of gloo processes."
    folder = tmp_path_factory.mktemp('uneven')
    port = 29_500 + os.getpid() % 1000
    ctx = mp.get_context('spawn')
    procs = [ctx.Process(target=worker, args=(r, str(folder), port)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]  # none hung or crashed
    ranks = [json.loads((folder / f'{r}.json').read_text()) for r in range(2)]
    return {name: (ranks[0][name], ranks[1][name]) for name in SCENARIOS}


def test_repeat_policy_equal_steps_and_every_example(results):
    a, b = results['repeat']
    assert len(a['ids']) == len(b['ids']) == 6
    seen = {i for r in (a, b) for batch in r['ids'] for i in batch}
    assert seen == set(range(a['n']))  # nothing dropped
    assert sorted([a['repeated'], b['repeated']]) == [0, 4]  # the short shard was read again for 4 steps


def test_stop_policy_ends_at_the_shortest_shard(results):
    a, b = results['stop']
    assert len(a['ids']) == len(b['ids']) == 2
    assert sorted([a['skipped'], b['skipped']]) == [0, 4]  # the long shard's remaining batches, counted


def test_empty_rank_fails_on_every_rank(results):
    a, b = results['empty']
    assert 'error' in a and 'error' in b
    assert "shard='chunks' or 'auto'" in a['error'] and 'none' in b['error']


@pytest.mark.parametrize('name', ['auto_repeat', 'auto_stop'])
def test_auto_shard_deals_chunks_when_files_are_few(results, name):
    a, b = results[name]
    assert len(a['ids']) == len(b['ids']) == 3
    assert sorted(i for r in (a, b) for batch in r['ids'] for i in batch) == list(range(a['n']))


def test_validation_keeps_unequal_lengths_and_refuses_an_empty_rank(results):
    a, b = results['val_uneven']
    assert sorted([len(a['ids']), len(b['ids'])]) == [2, 6]  # every example once, nothing repeated
    assert sorted(i for r in (a, b) for batch in r['ids'] for i in batch) == list(range(a['n']))
    a, b = results['val_empty']
    assert 'error' in a and 'error' in b and 'val split' in a['error']
