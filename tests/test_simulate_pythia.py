"""Pythia 8 + fastjet simulators (`foundation_jets.simulate.jets` / `.events`): reproducibility and bad input.

- The same request, once through the `fj` console script and once through `cli_main` in this process,
  writes byte-identical files (sha256 of the file; the writers are byte-deterministic), and the JetClass
  canonical content digest agrees too. A different seed gives a different file.
- Bad requests (unknown process, impossible cuts, negative counts, unwritable output) return exit code 2
  with a clear message, write nothing, and never reach the generator (it is replaced by a function that fails).
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('pythia8mc')
pytest.importorskip('fastjet')

from foundation_jets.simulate import events as sim_events
from foundation_jets.simulate import jets as sim_jets
from foundation_jets.data.jets import content_sha256

pytestmark = pytest.mark.timeout(90)

FJ = [str(Path(sys.executable).with_name('fj'))] if Path(sys.executable).with_name('fj').exists() else None


def sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def run_fj(args):
    cmd = (FJ or [sys.executable, '-m', 'foundation_jets.cli']) + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=80)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_jets_same_seed_same_sha(tmp_path):
    args = ['--process', 'TTBar', '--n-jets', '3', '--chunk-size', '3', '--no-mpi', '--quiet']
    run_fj(['simulate', 'jets', *args, '--seed', '7', '--out', str(tmp_path / 'a')])
    assert sim_jets.cli_main([*args, '--seed', '7', '--out', str(tmp_path / 'b')]) == 0
    assert sim_jets.cli_main([*args, '--seed', '8', '--out', str(tmp_path / 'c')]) == 0
    a, b, c = (tmp_path / d / 'TTBar_00{}.root'.format(s) for d, s in (('a', 7), ('b', 7), ('c', 8)))
    assert sha(a) == sha(b)
    assert content_sha256(a) == content_sha256(b)
    assert content_sha256(a) != content_sha256(c)


def test_events_same_seed_same_sha(tmp_path):
    args = ['--process', 'Ato4l', '--n-events', '3', '--quiet']
    run_fj(['simulate', 'events', *args, '--seed', '3', '--out', str(tmp_path / 'a.h5')])
    assert sim_events.cli_main([*args, '--seed', '3', '--out', str(tmp_path / 'b.h5')]) == 0
    assert sim_events.cli_main([*args, '--seed', '4', '--out', str(tmp_path / 'c.h5')]) == 0
    assert sha(tmp_path / 'a.h5') == sha(tmp_path / 'b.h5') != sha(tmp_path / 'c.h5')


@pytest.fixture
def no_generation(monkeypatch):
    def boom(*a, **k):
        raise AssertionError('generation started for a bad request')

    monkeypatch.setattr(sim_jets, 'generate_chunk', boom)
    monkeypatch.setattr(sim_events, 'generate_event_chunk', boom)


@pytest.mark.parametrize(
    'extra, message',
    [
        (['--process', 'TTBar', 'Zprime', '--n-jets', '5'], 'unknown jet process'),
        (['--process', 'TTBar', '--n-jets', '-5'], 'n_jets must be'),
        (['--process', 'TTBar', '--n-jets', '5', '--pt-min', '1000', '--pt-max', '500'], 'pt_min < pt_max'),
        (['--process', 'TTBar', '--n-jets', '5', '--workers', '0'], 'workers must be'),
        (['--process', 'TTBar', '--n-jets', '5', '--particle-pt-min', '-1'], 'particle_pt_min'),
    ],
)
def test_jets_bad_input(tmp_path, capsys, no_generation, extra, message):
    out = tmp_path / 'out'
    assert sim_jets.cli_main([*extra, '--out', str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_jets_unwritable(tmp_path, capsys, no_generation):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    assert sim_jets.cli_main(['--process', 'QCD', '--n-jets', '2', '--out', str(blocker / 'sub')]) == 2
    assert 'not writable' in capsys.readouterr().err


@pytest.mark.parametrize(
    'extra, message',
    [
        (['--process', 'Zprime', '--n-events', '5'], 'unknown event process'),
        (['--process', 'background', '--n-events', '0'], 'n_events must be'),
        (['--process', 'Ato4l', '--n-events', '5', '--chunk-size', '-1'], 'chunk_size must be'),
    ],
)
def test_events_bad_input(tmp_path, capsys, no_generation, extra, message):
    out = tmp_path / 'x.h5'
    assert sim_events.cli_main([*extra, '--out', str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_events_unwritable(tmp_path, capsys, no_generation):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    assert sim_events.cli_main(['--process', 'Ato4l', '--n-events', '2', '--out', str(blocker / 'y.h5')]) == 2
    assert '--out' in (err := capsys.readouterr().err) and 'exists and is not a folder' in err, err
    assert sim_events.cli_main(['--process', 'Ato4l', '--n-events', '2', '--out', '/proc/y.h5']) == 2
    assert "--out '/proc/y.h5'" in (err := capsys.readouterr().err) and 'not writable' in err, err
    assert sim_events.cli_main(['--process', 'Ato4l', '--n-events', '2', '--out', str(tmp_path)]) == 2
    assert 'is a folder' in capsys.readouterr().err
