"""Issue 11.3: every reproduction of a traceback from `fj`, each in its own `fj` process.

Each case asserts the exit code, that no `Traceback` appears on stdout or stderr, and that the message names the
offending argument. The processes run two at a time (the box has two cores); tool commands start in about 2.5 s
because `fj` imports Lightning only for fit/validate/test/predict.
"""

import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from foundation_jets.core import data_dir, shared_data_dir

pytestmark = pytest.mark.timeout(300)

FJ = [sys.executable, '-c', 'import sys; from foundation_jets.cli import main; sys.exit(main())']
ROOT = data_dir() / 'jets' / 'TTBar_000.root'


class Payload:
    "A pickle that would create a file when unpickled without weights_only."

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def _setup(tmp: Path) -> dict:
    "The files the cases need; returns the cases: name -> (argv, exit code, words the output must contain)."
    from foundation_jets.data.features import omnijet_spec
    from foundation_jets.tokenize.shards import build_tokenizer, save_tokenizer

    tok = build_tokenizer('VQVAETokenizer', num_layers=1, dim=8, num_heads=2, num_codes=16, dropout=0.0)
    save_tokenizer(tmp / 'tok.pt', tok, omnijet_spec())
    (tmp / 'a_file').write_text('not a folder')
    buf = tmp / 'good.ckpt'
    torch.save({'state_dict': {'w': torch.zeros(200, 200)}, 'epoch': 1}, buf)
    (tmp / 'trunc.ckpt').write_bytes(buf.read_bytes()[: buf.stat().st_size // 2])
    torch.save({'state_dict': Payload(tmp / 'PWNED_zip')}, tmp / 'evil.ckpt')
    (tmp / 'evil_raw.ckpt').write_bytes(pickle.dumps({'state_dict': Payload(tmp / 'PWNED_raw')}))
    bad = tmp / 'badnpy'
    bad.mkdir()
    src = shared_data_dir() / 'jetclass_500'
    for name in ('pf_mask.npy', 'labels.npy'):
        (bad / name).write_bytes((src / name).read_bytes())
    np.save(bad / 'pf_vectors.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
    tokenize = ['tokenize', '--tokenizer', tmp / 'tok.pt', '--out', tmp / 'shards', '--entry-stop', '5']
    lt = ['--trainer.default_root_dir', tmp / 'runs', '--trainer.logger', 'false']
    cases = {
        'tokenize --device bogus': ([*tokenize, '--device', 'bogus', ROOT], 2, ['--device', "'bogus'"]),
        'demo --out /proc/x': (['demo', '--smoke', '--out', '/proc/x'], 2, ["--out '/proc/x'"]),
        'demo --out FILE': (['demo', '--smoke', '--out', tmp / 'a_file'], 2, ['--out', 'not a folder']),
        'demo --out FILE/sub': (['demo', '--smoke', '--out', tmp / 'a_file' / 'sub'], 2, ['--out', 'a_file/sub']),
        'simulate lartpc --out /proc/l.h5': (
            ['simulate', 'lartpc', '--n-events', '1', '--out', '/proc/l.h5'],
            2,
            ["--out '/proc/l.h5'"],
        ),
        'simulate tracks --out /proc/trk': (
            ['simulate', 'tracks', '--n-events', '1', '--out', '/proc/trk'],
            2,
            ["--out '/proc/trk'"],
        ),
        'download --mirror notaurl': (
            ['download', 'jetclass-example', '--to', tmp / 'dl', '--mirror', 'notaurl'],
            2,
            ["--mirror", "'notaurl'"],
        ),
        'download --to /proc/x': (['download', 'jetclass-example', '--to', '/proc/x'], 2, ["--to '/proc/x'"]),
        'fit --data.batch_size 0': (['fit', '--data.batch_size', '0', *lt], 2, ['--data.batch_size 0']),
        'validate --ckpt_path missing': (
            ['validate', '--ckpt_path', tmp / 'missing.ckpt', *lt],
            2,
            ['--ckpt_path', 'missing.ckpt', 'not found'],
        ),
        'validate --ckpt_path truncated': (
            ['validate', '--ckpt_path', tmp / 'trunc.ckpt', *lt],
            1,
            ["trunc.ckpt: field 'ckpt_path'"],
        ),
        'validate --ckpt_path pickle payload (zip)': (
            ['validate', '--ckpt_path', tmp / 'evil.ckpt', *lt],
            1,
            ["evil.ckpt: field 'ckpt_path'"],
        ),
        'validate --ckpt_path pickle payload (raw)': (
            ['validate', '--ckpt_path', tmp / 'evil_raw.ckpt', *lt],
            1,
            ["evil_raw.ckpt: field 'ckpt_path'"],
        ),
        'fit --data.path with a bad .npy': (
            ['fit', '--data.path', bad, *lt, '--trainer.max_epochs', '1'],
            1,
            ['pf_vectors.npy'],
        ),
    }
    if not torch.cuda.is_available():
        cases['tokenize --device cuda (CPU-only)'] = ([*tokenize, '--device', 'cuda', ROOT], 2, ['--device', 'CUDA'])
    return cases


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    "Run every case once, two processes at a time: name -> (case, CompletedProcess)."
    tmp = tmp_path_factory.mktemp('cli_errors')
    cases = _setup(tmp)
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    env.pop('FJ_DEBUG', None)

    def run(item):
        name, (argv, *_) = item
        r = subprocess.run(FJ + [str(a) for a in argv], capture_output=True, text=True, cwd=tmp, env=env, timeout=240)
        return name, r

    with ThreadPoolExecutor(2) as pool:
        done = dict(pool.map(run, cases.items()))
    return tmp, {name: (cases[name], done[name]) for name in cases}


CASES = [
    'tokenize --device bogus',
    'tokenize --device cuda (CPU-only)',
    'demo --out /proc/x',
    'demo --out FILE',
    'demo --out FILE/sub',
    'simulate lartpc --out /proc/l.h5',
    'simulate tracks --out /proc/trk',
    'download --mirror notaurl',
    'download --to /proc/x',
    'fit --data.batch_size 0',
    'validate --ckpt_path missing',
    'validate --ckpt_path truncated',
    'validate --ckpt_path pickle payload (zip)',
    'validate --ckpt_path pickle payload (raw)',
    'fit --data.path with a bad .npy',
]


@pytest.mark.parametrize('name', CASES)
def test_one_clear_line_and_an_exit_code(results, name):
    tmp, res = results
    if name not in res:
        pytest.skip('CUDA is available on this machine')
    (argv, code, words), r = res[name]
    out = r.stdout + r.stderr
    assert 'Traceback' not in out, f'{name}:\n{out[-3000:]}'
    assert r.returncode == code, f'{name}: exit {r.returncode}\n{out[-3000:]}'
    for w in words:
        assert w in r.stderr, f'{name}: {w!r} not in\n{r.stderr[-3000:]}'
    error_lines = [line for line in r.stderr.splitlines() if 'error:' in line]
    assert len(error_lines) == 1, f'{name}:\n{r.stderr[-3000:]}'
    assert 'internal error' not in r.stderr, r.stderr


def test_pickle_payloads_never_ran(results):
    tmp, _ = results
    assert not (tmp / 'PWNED_zip').exists() and not (tmp / 'PWNED_raw').exists()


def test_simulate_help_and_debug_traceback(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    env.pop('FJ_DEBUG', None)
    r = subprocess.run(FJ + ['simulate', '--help'], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and 'usage: fj simulate KIND' in r.stdout and 'lartpc' in r.stdout, r.stdout + r.stderr
    argv = ['validate', '--ckpt_path', str(tmp_path / 'missing.ckpt')]
    r = subprocess.run(FJ + ['--debug', *argv], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0 and 'Traceback' in r.stderr and 'ConfigError: --ckpt_path' in r.stderr, r.stderr[-2000:]
    r = subprocess.run(FJ + argv, capture_output=True, text=True, env=dict(env, FJ_DEBUG='1'), timeout=120)
    assert 'Traceback' in r.stderr, r.stderr[-2000:]
