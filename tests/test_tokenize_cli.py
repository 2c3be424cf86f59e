"""`fj tokenize` end to end: two small JetClass files become two self-contained token shards,
a rerun skips them, and bad usage exits 2 with a short message and no traceback."""

import os
import subprocess
import sys

import pytest
import torch

from foundation_jets.core import data_dir
from foundation_jets.data.features import omnijet_spec
from foundation_jets.data.jets import load_jetclass
from foundation_jets.tokenize.shards import build_tokenizer, read_token_shard, save_tokenizer, tokenize_jets

# call the tool's entry point the way `fj tokenize` does (the dispatcher may not list it yet)
TOOL = [sys.executable, '-c', 'import sys; from foundation_jets.tokenize.shards import cli_main; sys.exit(cli_main())']
FILES = [data_dir() / 'jets' / 'TTBar_000.root', data_dir() / 'jets' / 'HToBB_000.root']


def run(*args, timeout=120):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    return subprocess.run(TOOL + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope='module')
def tok_file(tmp_path_factory):
    torch.manual_seed(0)
    tok = build_tokenizer('VQVAETokenizer', num_layers=1, dim=16, num_heads=2, num_codes=64, dropout=0.0)
    return tok, save_tokenizer(tmp_path_factory.mktemp('tok') / 'tok.pt', tok, omnijet_spec())


def test_end_to_end_and_resume(tok_file, tmp_path):
    tok, path = tok_file
    args = ['--tokenizer', path, '--out', tmp_path / 'out', '--entry-stop', 40, '--device', 'cpu', *FILES]
    r = run(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    shards = sorted((tmp_path / 'out').glob('*.h5'))
    assert [s.name for s in shards] == ['HToBB_000.tokens.h5', 'TTBar_000.tokens.h5']
    for f in FILES:
        sh = read_token_shard(tmp_path / 'out' / f'{f.stem}.tokens.h5', rebuild=True)
        direct, mask = tokenize_jets(tok, omnijet_spec(), load_jetclass(f, entry_stop=40), device='cpu')
        assert torch.equal(sh['codes'], direct) and torch.equal(sh['mask'], mask)
        assert sh['meta']['source'] == f.name and sh['meta']['entry_stop'] == 40
    mtimes = [s.stat().st_mtime_ns for s in shards]
    r = run(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '2 skipped' in r.stdout, r.stdout
    assert [s.stat().st_mtime_ns for s in shards] == mtimes


def test_bad_usage_exits_2(tok_file, tmp_path):
    _, path = tok_file
    cases = {
        'no arguments': [],
        'no tokenizer option': ['--out', tmp_path, FILES[0]],
        'missing tokenizer file': ['--tokenizer', tmp_path / 'missing.pt', '--out', tmp_path, FILES[0]],
        'missing input': ['--tokenizer', path, '--out', tmp_path, tmp_path / 'nope.root'],
        'bad number': ['--tokenizer', path, '--out', tmp_path, '--chunk-size', 'many', FILES[0]],
    }
    for what in ('missing tokenizer file',):  # one real process; the rest in-process below
        r = run(*cases[what])
        assert r.returncode == 2, f'{what}: {r.returncode}\n{r.stderr[-2000:]}'
        assert 'Traceback' not in r.stderr and 'tokenizer file not found' in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) <= 8, r.stderr  # argparse usage + one error line
    from foundation_jets.tokenize.shards import cli_main

    for what, argv in cases.items():
        with pytest.raises(SystemExit) as e:
            cli_main([str(a) for a in argv])
        assert e.value.code == 2, what


def test_bad_tokenizer_file_is_reported(tmp_path, capsys):
    from foundation_jets.tokenize.shards import cli_main

    (tmp_path / 'junk.pt').write_bytes(b'not a tokenizer')
    assert cli_main(['--tokenizer', str(tmp_path / 'junk.pt'), '--out', str(tmp_path), '--quiet', str(FILES[0])]) == 1
    err = capsys.readouterr().err
    assert 'junk.pt' in err and 'Traceback' not in err


def _jets_in(folder):
    return sum(len(read_token_shard(p)['codes']) for p in sorted(folder.glob('*.tokens.h5')))


def test_rerun_with_another_chunk_size_never_duplicates_jets(tok_file, tmp_path, capsys):
    "Issue 11.6: --chunk-size 100 into a folder written with --chunk-size 20 is refused (or --overwrite replaces)."
    from foundation_jets.tokenize.shards import TOKEN_LAYOUT_FILE, cli_main

    _, path = tok_file
    base = ['--tokenizer', str(path), '--out', str(tmp_path), '--entry-stop', '60', '--device', 'cpu', '--quiet']
    assert cli_main([*base, '--chunk-size', '20', str(FILES[0])]) == 0
    assert len(list(tmp_path.glob('*.tokens.h5'))) == 3 and _jets_in(tmp_path) == 60
    assert (tmp_path / TOKEN_LAYOUT_FILE).is_file()
    with pytest.raises(SystemExit) as e:
        cli_main([*base, '--chunk-size', '100', str(FILES[0])])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert '--chunk-size 20 (this run: 100)' in err and '--overwrite' in err, err
    assert _jets_in(tmp_path) == 60  # nothing added
    assert cli_main([*base, '--chunk-size', '100', '--overwrite', str(FILES[0])]) == 0
    assert [p.name for p in tmp_path.glob('*.tokens.h5')] == ['TTBar_000.tokens.h5'] and _jets_in(tmp_path) == 60
    assert cli_main([*base, '--chunk-size', '100', str(FILES[0])]) == 0  # same options: resumes


def test_folder_of_shards_without_a_layout_is_refused(tok_file, tmp_path, capsys):
    from foundation_jets.tokenize.shards import TOKEN_LAYOUT_FILE, cli_main

    _, path = tok_file
    base = ['--tokenizer', str(path), '--out', str(tmp_path), '--entry-stop', '30', '--device', 'cpu', '--quiet']
    assert cli_main([*base, str(FILES[0])]) == 0
    (tmp_path / TOKEN_LAYOUT_FILE).unlink()
    with pytest.raises(SystemExit):
        cli_main([*base, '--chunk-size', '10', str(FILES[0])])
    assert f'no {TOKEN_LAYOUT_FILE}' in capsys.readouterr().err
