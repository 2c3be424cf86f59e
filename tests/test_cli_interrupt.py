"""Issue 11.3 and 11.5: interrupted `fj` runs, with real signals sent to real processes.

- Ctrl-C (SIGINT to the process group, as a terminal sends it) during `fj tokenize` and `fj simulate jets --workers 2`
  prints "interrupted; rerun to resume", exits 130, shows no traceback (the pool workers ignore Ctrl-C) and leaves
  no hidden temporary; the workers are gone; a rerun of `fj tokenize` resumes and finishes.
- SIGTERM unwinds like Ctrl-C: a writer interrupted inside `atomic_path` deletes its temporary at once (exit 143).
- After `kill -9` of `fj simulate jets --workers 2`, its worker processes exit within seconds.
- After `kill -9` of `fj tokenize`, the temporary it would have left (same name pattern, the killed pid) is removed by
  the rerun, while a temporary of another output or of a live process is kept.
"""

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from foundation_jets.core import data_dir, temporary_prefix

pytestmark = pytest.mark.timeout(240)

FJ = [sys.executable, '-c', 'import sys; from foundation_jets.cli import main; sys.exit(main())']
FILES = sorted((data_dir() / 'jets').glob('*.root'))


def _env(**kw):
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1', **kw)
    env.pop('FJ_DEBUG', None)
    return env


def _as_from_a_terminal():
    "In the child before exec: SIGINT at its default and no signal blocked, whatever the test process inherited."
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args, cwd):
    "An `fj` process in its own session (so a signal to its group reaches its workers, as a terminal's Ctrl-C does)."
    return subprocess.Popen(
        FJ + [str(a) for a in args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_as_from_a_terminal,
    )


def _wait_for(cond, timeout, what):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.05)


def _workers(pid):
    "Process ids of the multiprocessing workers whose parent is `pid` (from /proc)."
    out = []
    for d in Path('/proc').iterdir():
        if d.name.isdigit():
            try:
                stat, cmd = (d / 'stat').read_text(), (d / 'cmdline').read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(')', 1)[1].split()[1]) == pid and b'spawn_main' in cmd:
                out.append(int(d.name))
    return out


def _alive(pid):
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except OSError:
        return False
    return state != 'Z'


def _hidden_parts(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith('.') and p.name.endswith('.part'))


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
    from foundation_jets.data.features import omnijet_spec
    from foundation_jets.tokenize.shards import build_tokenizer, save_tokenizer

    tok = build_tokenizer('VQVAETokenizer', num_layers=1, dim=8, num_heads=2, num_codes=16, dropout=0.0)
    return save_tokenizer(tmp_path_factory.mktemp('tok') / 'tok.pt', tok, omnijet_spec())


def test_ctrl_c_during_tokenize_then_resume(tokenizer, tmp_path):
    out = tmp_path / 'shards'
    args = ['tokenize', '--tokenizer', tokenizer, '--out', out, '--chunk-size', '10', '--batch-size', '8']
    args += ['--device', 'cpu', '--quiet', *FILES]
    p = _start(args, tmp_path)
    _wait_for(lambda: out.is_dir() and len(list(out.glob('*.tokens.h5'))) >= 3, 120, 'three shards')
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-3000:]
    assert 'fj tokenize: interrupted; rerun to resume' in err and 'Traceback' not in err, err[-3000:]
    assert _hidden_parts(out) == []
    n_before = len(list(out.glob('*.tokens.h5')))
    r = subprocess.run(FJ + [str(a) for a in args[:-len(FILES)] + FILES[:2]], capture_output=True, text=True,
                       env=_env(), timeout=180, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list(out.glob('*.tokens.h5'))) >= n_before and _hidden_parts(out) == []


def test_kill_9_leftovers_of_tokenize_are_removed_by_the_rerun(tokenizer, tmp_path):
    out = tmp_path / 'shards'
    args = ['tokenize', '--tokenizer', tokenizer, '--out', out, '--chunk-size', '10', '--entry-stop', '30']
    args += ['--device', 'cpu', '--quiet', FILES[0]]
    p = _start([*args[:-1], *FILES], tmp_path)
    last = out / f'{FILES[0].stem}.0002.tokens.h5'
    _wait_for(last.exists, 120, 'the shards of the first file')  # the rerun skips them all
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:  # it finished first: the leftover below is planted all the same
        pass
    p.communicate(timeout=30)
    killed = p.pid
    shard = out / f'{FILES[0].stem}.0001.tokens.h5'
    # what a kill -9 in the middle of writing this shard leaves behind: the writer's pid is the killed process's
    left = out / (temporary_prefix(shard).replace(f'.{os.getpid()}.', f'.{killed}.') + 'ab12cd34.part')
    other = out / (temporary_prefix(out / 'other.h5').replace(f'.{os.getpid()}.', f'.{killed}.') + 'x.part')
    live = out / (temporary_prefix(shard) + 'ef56gh78.part')  # this test process runs: not stale
    for f in (left, other, live):
        f.write_bytes(b'half a shard')
    r = subprocess.run(FJ + [str(a) for a in args], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not left.exists(), _hidden_parts(out)
    assert other.exists() and live.exists()  # not an output of this run / its writer still runs
    assert 'skipped' not in r.stdout  # --quiet


def test_sigterm_inside_a_writer_deletes_its_temporary(tmp_path):
    "A stand-in tool writes through core.atomic_path and receives SIGTERM mid-write: exit 143, no temporary left."
    (tmp_path / 'slow_writer.py').write_text(
        textwrap.dedent("""
        import os, signal, sys, time
        from foundation_jets.core import atomic_path

        def cli_main(argv):
            with atomic_path(argv[0]) as tmp:
                tmp.write_bytes(b'half')
                print(tmp, flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
            return 0
        """)
    )
    code = (
        f'import sys; sys.path.insert(0, {str(tmp_path)!r}); from foundation_jets.cli import TOOLS, main; '
        f"TOOLS['slow-writer'] = 'slow_writer'; sys.exit(main(sys.argv[1:]))"
    )
    r = subprocess.run(
        [sys.executable, '-c', code, 'slow-writer', str(tmp_path / 'out.h5')],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert r.returncode == 143, r.stderr[-2000:]
    assert 'fj slow-writer: terminated; rerun to resume' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    tmp = Path(r.stdout.strip())
    assert tmp.name.endswith('.part') and tmp.parent == tmp_path  # the temporary existed ...
    assert not tmp.exists() and not (tmp_path / 'out.h5').exists()  # ... and is gone, with no half output


PYTHIA = all(importlib.util.find_spec(m) for m in ('pythia8mc', 'fastjet'))
# one chunk of 2000 jets per process: each worker is busy for minutes, so only `die_with_parent` can end it early
SIM = ['simulate', 'jets', '--process', 'TTBar', 'WToQQ', '--n-jets', '2000', '--chunk-size', '2000', '--workers', '2']
SIM += ['--no-mpi', '--quiet']


def _start_sim_with_workers(tmp_path, settle):
    p = _start([*SIM, '--out', tmp_path / 'jets'], tmp_path)
    try:
        _wait_for(lambda: len(_workers(p.pid)) >= 2, 90, 'two worker processes')
    except AssertionError:
        os.killpg(p.pid, signal.SIGKILL)
        raise
    time.sleep(settle)
    assert p.poll() is None, p.communicate()[1][-2000:]
    return p, _workers(p.pid)


def _cpu_seconds(pid):
    "User + system CPU time of a process, in seconds."
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


@pytest.mark.skipif(not PYTHIA, reason='needs pythia8mc and fastjet')
def test_ctrl_c_during_simulate_jets_with_workers(tmp_path):
    p, workers = _start_sim_with_workers(tmp_path, settle=0.5)  # workers still starting: Python code, not Pythia
    try:
        for w in workers:
            os.kill(w, signal.SIGINT)  # a worker alone: it ignores Ctrl-C from birth
        time.sleep(1.5)
        assert all(_alive(w) for w in workers) and p.poll() is None
        os.killpg(p.pid, signal.SIGINT)  # the whole group, as a terminal does: the parent stops the workers
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err[-3000:]
        assert 'fj simulate jets: interrupted; rerun to resume' in err and 'Traceback' not in err, err[-3000:]
        _wait_for(lambda: not any(_alive(w) for w in workers), 10, 'the workers to exit')
        assert not list((tmp_path / 'jets').glob('*.root')) and _hidden_parts(tmp_path / 'jets') == []
    finally:
        for pid in [p.pid, *workers]:  # never leave processes behind, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not PYTHIA, reason='needs pythia8mc and fastjet')
def test_workers_die_with_a_killed_parent(tmp_path):
    p, workers = _start_sim_with_workers(tmp_path, settle=0)
    try:
        _wait_for(lambda: all(_cpu_seconds(w) > 4 for w in workers), 60, 'the workers to start generating')
        os.kill(p.pid, signal.SIGKILL)  # only the parent
        p.wait(timeout=30)  # not communicate(): orphaned workers would hold its pipes open
        _wait_for(lambda: not any(_alive(w) for w in workers), 5, 'the workers to exit after kill -9 of the parent')
    finally:
        for pid in [p.pid, *workers]:  # never leave orphans behind, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        p.communicate(timeout=30)
