"""The `fj` command: usage errors are short messages with a non-zero exit, never a traceback;
`fj demo` trains a jet tagger end to end and writes its metrics."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

FJ = [sys.executable, '-c', 'import sys; from foundation_jets.cli import main; sys.exit(main())']

def fj(*args, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    return subprocess.run(FJ + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)

def _bad_usage(tmp):
    (tmp / 'not_yaml.yaml').write_text('model: [unclosed\n  : :')
    (tmp / 'unknown_key.yaml').write_text('trainer: {max_epochs: 1}\nmodell: {}\n')
    (tmp / 'bad_class.yaml').write_text('model: {class_path: foundation_jets.nothing.Here}\n')
    (tmp / 'bad_value.yaml').write_text('data: {class_path: foundation_jets.cli.JetNpyDataModule, init_args: {classes: [QCD, top]}}\n'
                                        'trainer: {max_epochs: 1}\n')
    return {'no command': [], 'unknown command': ['frobnicate'], 'unknown simulate target': ['simulate', 'quarks'],
            'missing config': ['fit', '--config', tmp / 'missing.yaml'], 'invalid yaml': ['fit', '--config', tmp / 'not_yaml.yaml'],
            'unknown section': ['fit', '--config', tmp / 'unknown_key.yaml'], 'unknown class': ['fit', '--config', tmp / 'bad_class.yaml'],
            'bad option value': ['fit', '--trainer.max_epochs', 'many'], 'unknown option': ['test', '--no-such-option', '1'],
            'invalid value in data': ['fit', '--config', tmp / 'bad_value.yaml'],
            'bad demo option': ['demo', '--max-epochs', 'x']}

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
    r = subprocess.run([sys.executable, '-c', 'import sys, foundation_jets.cli; print(sorted(m for m in sys.modules if ".simulate" in m or ".download" in m))'],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == '[]', r.stdout + r.stderr  # tools are imported only when called
    for tool in TOOLS:  # each tool either exists (its --help works) or is reported in one line with exit code 2
        rc = main([*tool.split(), '--help'])
        err = capsys.readouterr().err
        assert rc == 0 or (rc == 2 and len(err.strip().splitlines()) == 1), f'{tool}: rc {rc}: {err}'
    assert main(['--help']) == 0 and 'fj simulate' in capsys.readouterr().out

METRIC_KEYS = {'task', 'classes', 'n_train', 'n_val', 'n_test', 'epochs', 'best_epoch', 'accuracy', 'auc', 'auc_untrained',
               'auc_per_class', 'top_vs_qcd_auc', 'rejection_at_30', 'rejection_at_30_is_lower_bound', 'wall_time_s', 'seed', 'device'}

def test_demo_writes_metrics(tmp_path):
    out = tmp_path / 'demo'
    r = fj('demo', '--out', out, '--max-epochs', 20, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / 'metrics.json').read_text())
    assert METRIC_KEYS <= set(m), METRIC_KEYS - set(m)
    assert (m['n_train'], m['n_val'], m['n_test']) == (300, 101, 99) and len(m['classes']) == 10
    # ten classes: chance is 0.1 accuracy and 0.5 macro AUC; the untrained model sits near chance
    assert m['auc_untrained'] < 0.7 < m['auc'], m
    assert m['accuracy'] > 0.25 and m['top_vs_qcd_auc'] > 0.75, m
    assert (out / 'roc.png').stat().st_size > 1000
    assert 'macro AUC' in r.stdout and 'Tbqq vs QCD' in r.stdout
    assert not [p for p in out.iterdir() if p.name.endswith('.part')]  # no temporary files left
