"""The `fj` command: usage errors are short messages with a non-zero exit, never a traceback;
`fj demo` runs the OmniJet-α pipeline end to end and writes its metrics."""

import json

import torch
import os
import subprocess
import sys

FJ = [sys.executable, '-c', 'import sys; from foundation_jets.cli import main; sys.exit(main())']


def fj(*args, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    return subprocess.run(
        FJ + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def _bad_usage(tmp):
    (tmp / 'not_yaml.yaml').write_text('model: [unclosed\n  : :')
    (tmp / 'unknown_key.yaml').write_text('trainer: {max_epochs: 1}\nmodell: {}\n')
    (tmp / 'bad_class.yaml').write_text('model: {class_path: foundation_jets.nothing.Here}\n')
    (tmp / 'bad_value.yaml').write_text(
        'data: {class_path: foundation_jets.data.modules.JetNpyDataModule, init_args: {classes: [QCD, top]}}\n'
        'trainer: {max_epochs: 1}\n'
    )
    return {
        'no command': [],
        'unknown command': ['frobnicate'],
        'unknown simulate target': ['simulate', 'quarks'],
        'missing config': ['fit', '--config', tmp / 'missing.yaml'],
        'invalid yaml': ['fit', '--config', tmp / 'not_yaml.yaml'],
        'unknown section': ['fit', '--config', tmp / 'unknown_key.yaml'],
        'unknown class': ['fit', '--config', tmp / 'bad_class.yaml'],
        'bad option value': ['fit', '--trainer.max_epochs', 'many'],
        'unknown option': ['test', '--no-such-option', '1'],
        'invalid value in data': ['fit', '--config', tmp / 'bad_value.yaml'],
        'bad demo option': ['demo', '--threads', 'x'],
        'bad demo value': ['demo', '--threads', '0'],
    }


# each subprocess pays the Lightning import (5 s CPU, 20 s on a loaded 2-core box): one case per error path
# (dispatcher, config parser, object construction) runs as a real process; all cases run in-process below
SUBPROCESS = ['unknown command', 'missing config', 'invalid value in data']


def test_usage_errors_have_no_traceback(tmp_path):
    cases = _bad_usage(tmp_path)
    for what in SUBPROCESS:
        r = fj(*cases[what], cwd=tmp_path)
        assert r.returncode == 2, f'{what}: rc {r.returncode}\n{r.stderr[-2000:]}'
        assert 'Traceback' not in r.stderr and 'Traceback' not in r.stdout, f'{what}:\n{r.stderr[-2000:]}'
        assert 'error:' in r.stderr, what
        assert len(r.stderr.strip().splitlines()) <= 6, f'{what}: message too long:\n{r.stderr}'


def test_usage_errors_in_process(tmp_path, capsys, monkeypatch):
    from foundation_jets.cli import main

    monkeypatch.chdir(tmp_path)
    for what, args in _bad_usage(tmp_path).items():
        rc = main([str(a) for a in args])  # an exception here would be a traceback for the user
        err = capsys.readouterr().err
        assert rc == 2, f'{what}: rc {rc}\n{err[-2000:]}'
        assert 'error:' in err and len(err.strip().splitlines()) <= 6, f'{what}:\n{err}'


def test_tool_dispatch_is_lazy_and_clean(capsys):
    from foundation_jets.cli import main, TOOLS

    r = subprocess.run(
        [
            sys.executable,
            '-c',
            'import sys, foundation_jets.cli; '
            'print(sorted(m for m in sys.modules if ".simulate" in m or ".download" in m or m == "lightning"))',
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.stdout.strip() == '[]', r.stdout + r.stderr  # tools (and Lightning) are imported only when needed
    for tool in TOOLS:  # each tool either exists (its --help works) or is reported in one line with exit code 2
        rc = main([*tool.split(), '--help'])
        err = capsys.readouterr().err
        assert rc == 0 or (rc == 2 and len(err.strip().splitlines()) == 1), f'{tool}: rc {rc}: {err}'
    assert main(['--help']) == 0 and 'fj simulate' in capsys.readouterr().out


DEMO_SECTIONS = {'config', 'data', 'tokenizer', 'pretraining', 'generation', 'transfer', 'wall_time_s'}


def test_demo_writes_metrics(tmp_path):
    "One smoke run, asked for far more labelled jets than the pool holds (issue 11.4): it caps, says so, reports it."
    out = tmp_path / 'demo'
    r = fj('demo', '--smoke', '--out', out, '--n-train', 100_000, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / 'metrics.json').read_text())
    used = m['transfer']['n_train']
    assert m['transfer']['n_train_requested'] == 100_000 and 40 < used <= m['data']['n_train_pool'] < 5_000, m
    assert '--n-train 100000' in r.stderr and f'using {used}' in r.stderr, r.stderr[-2000:]
    assert f'transfer ({used} labels)' in r.stdout
    assert DEMO_SECTIONS <= set(m), DEMO_SECTIONS - set(m)
    assert set(m['transfer']['regimes']) == {'scratch', 'frozen', 'finetune'}
    for r_ in m['transfer']['regimes'].values():
        assert len(r_['runs']) == len(m['config']['seeds'])
    # every claim against the same model untrained, measured in the same run (issue 10, item 6)
    t, g = m['tokenizer'], m['generation']
    assert t['mass_resolution_GeV'] < 0.85 * t['untrained']['mass_resolution_GeV'], t
    assert m['pretraining']['val_loss'] < m['pretraining']['uniform_loss'] - 1, m['pretraining']
    assert g['c2st_auc'] < g['untrained']['c2st_auc'] - 0.05, g
    assert m['transfer']['finetune_beats_scratch'], m['transfer']['regimes']
    assert set(m['generation']['kl']) >= {'pt', 'eta', 'phi', 'mass', 'tau21', 'tau32', 'n_constituents'}
    assert 'OmniJet-α demo' in r.stdout
    # the saved models reload and reproduce the trained backbone (issue 10, item 3)
    import foundation_jets
    from foundation_jets.data.jets import load_embedded_jets
    from foundation_jets.demo import backbone_fingerprint, demo_sentences

    tokenizer = foundation_jets.load_pretrained(out / 'tokenizer.pt')
    backbone = foundation_jets.load_pretrained(out / 'backbone.pt')
    jets = load_embedded_jets(max_particles=m['config']['max_particles'])[torch.arange(8)]
    again = backbone_fingerprint(
        backbone, demo_sentences(tokenizer, tokenizer.feature_spec, jets, m['config']['num_codes'])
    )
    saved = m['saved']['fingerprint']
    assert (
        abs(again['sum'] - saved['sum']) <= 1e-4 * again['abs_sum']
        and abs(again['abs_sum'] / saved['abs_sum'] - 1) < 1e-6
    )
    figures = ['generation.png', 'jet_images.png', 'tokenizer_mass.png', 'training_curves.png', 'transfer_roc.png']
    assert sorted(p.name for p in out.glob('*.png')) == figures  # the key figures, next to metrics.json
    import matplotlib.image

    for name in figures:
        image = matplotlib.image.imread(out / name)  # raises on a file that is not a valid PNG
        assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0.01, (name, image.shape)
    assert not [
        p for p in out.iterdir() if p.name.endswith('.part') or p.name.startswith('.')
    ]  # no temporary files left
