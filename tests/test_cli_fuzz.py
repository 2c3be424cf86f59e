"""Issue 11.3: hypothesis feeds every `fj` subcommand random paths, numbers and devices; no case may end in a traceback.

`main(argv)` runs in this process (a subprocess per example would cost seconds each). It must return an exit code,
never raise, and never print a `Traceback` or an "internal error" (the line `fj` prints for an unexpected exception).
The options of each command are drawn from pools of troublesome values: missing, unwritable (`/proc`), below a file,
empty or odd paths; zero, negative, huge, NaN and non-numeric numbers; devices this machine lacks.

Work that a valid request would start is kept small: the generators and the demo pipeline are replaced by stubs that
validate and write an empty output through the package's atomic writer (the real ones are tested elsewhere), downloads
go to a dead local port, `fj tokenize` reads a 20-jet file, and Lightning runs `fast_dev_run`. Examples are
derandomized, so CI is reproducible.
"""

import contextlib
import io
import os
from pathlib import Path

import pytest
import uproot
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from foundation_jets.cli import LIGHTNING_COMMANDS as LIGHTNING, TOOLS as REGISTERED_TOOLS
from foundation_jets.core import atomic_write_bytes, data_dir
from foundation_jets.data.jets import JETCLASS_LABELS, write_jetclass_root

pytestmark = pytest.mark.timeout(600)

NUMBERS = ['0', '-1', '1', '2', '3', '2.5', 'nan', 'inf', '-inf', '1e309', 'x', '', '99999999999', '0x10', '-0']
DEVICES = ['cpu', 'auto', 'cuda', 'cuda:7', 'gpu', 'bogus', 'meta', 'mps', '', 'xla']
MIRRORS = ['notaurl', 'ftp://127.0.0.1/x', 'http://', 'http://127.0.0.1:9', 'file:///nonexistent', '']


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "Files the paths point at: a 20-jet JetClass file, a tokenizer, a text file, a folder, a corrupt .root."
    from foundation_jets.data.features import omnijet_spec
    from foundation_jets.tokenize.shards import build_tokenizer, save_tokenizer

    d = tmp_path_factory.mktemp('fuzz')
    with uproot.open(data_dir() / 'jets' / 'TTBar_000.root') as f:
        arrays = f['tree'].arrays(library='np', entry_stop=20)
    write_jetclass_root(
        d / 'TTBar_small.root',
        {k: list(v) for k, v in arrays.items() if k.startswith('part_')},
        {k: v for k, v in arrays.items() if k.startswith('jet_')},
        JETCLASS_LABELS.index('Tbqq'),
    )
    tok = build_tokenizer('VQVAETokenizer', num_layers=1, dim=8, num_heads=2, num_codes=16, dropout=0.0)
    save_tokenizer(d / 'tok.pt', tok, omnijet_spec())
    (d / 'file.txt').write_text('a file, not a folder')
    (d / 'folder').mkdir()
    (d / 'corrupt.root').write_bytes(b'root\x00' * 100)
    (d / 'corrupt.pt').write_bytes(b'PK\x03\x04 not a torch file')
    paths = [
        d / 'new_out',
        d / 'folder',
        d / 'file.txt',
        d / 'file.txt' / 'below',
        '/proc/x',
        '/proc/x.h5',
        '/dev/null',
        d / 'missing' / 'deep' / 'x.h5',
        d / ('long' * 70),
        d / 'ünïcode dir',
        '',
        '-',
        d / 'corrupt.root',
        d / 'corrupt.pt',
        d / 'TTBar_small.root',
        d / 'tok.pt',
    ]
    return d, [str(p) for p in paths]


@pytest.fixture
def stubs(monkeypatch, world):
    "Keep valid requests small; outputs still go through the package's writers."
    import foundation_jets.demo as demo
    from foundation_jets.data import download as dl
    from foundation_jets.simulate import events, jets, lartpc, tracks

    d, _ = world
    monkeypatch.chdir(d)
    monkeypatch.setenv('FJ_DOWNLOAD_MIRROR', 'http://127.0.0.1:9')
    monkeypatch.delenv('FJ_DEBUG', raising=False)
    monkeypatch.setattr(dl.time, 'sleep', lambda s: None)

    def run_demo(out='runs/demo', cfg=None, verbose=True):
        atomic_write_bytes(Path(out) / 'metrics.json', b'{}')
        return {}

    def write_jet_files(out_dir, processes, n_jets, seed=0, workers=1, chunk_size=250, cuts=None, smear=False,
                        particle_pt_min=0.0, mpi=True, progress=True):  # fmt: skip
        jets.check_jet_request(processes, n_jets, workers, chunk_size, cuts, particle_pt_min, seed, out_dir)
        return [atomic_write_bytes(Path(out_dir) / jets.jet_file_name(p, seed), b'') for p in processes[:1]]

    def write_events(out, process, n_events, seed=0, workers=1, chunk_size=1000, progress=True):
        events.check_event_request(process, n_events, seed, workers, chunk_size, out)
        return atomic_write_bytes(out, b'')

    def write_lartpc(path, n_events, seed=0, config=None):
        lartpc.simulate_lartpc  # the real one validates n_events; so does the CLI
        return atomic_write_bytes(path, b'')

    real_barrel, real_solenoid = tracks.simulate_barrel2d, tracks.write_solenoid3d
    monkeypatch.setattr(demo, 'run_demo', run_demo)
    monkeypatch.setattr(jets, 'write_jet_files', write_jet_files)
    monkeypatch.setattr(events, 'write_events', write_events)
    monkeypatch.setattr(lartpc, 'write_lartpc', write_lartpc)
    monkeypatch.setattr(tracks, 'simulate_barrel2d', lambda n, seed, cfg: real_barrel(min(n, 1), seed, cfg))
    monkeypatch.setattr(tracks, 'write_solenoid3d', lambda out, n, seed, cfg: real_solenoid(out, min(n, 1), seed, cfg))


def _argv(draw, world, command):
    "Draw the arguments of one command: each option present or not, its value valid or from a troublesome pool."
    d, paths = world
    path, number, device = st.sampled_from(paths), st.sampled_from(NUMBERS), st.sampled_from(DEVICES)
    anything = st.one_of(path, number, device)
    small = st.sampled_from(['1', '2', '5', '20'])
    out = st.sampled_from([str(d / 'out'), str(d / 'out2' / 'sub'), str(d / 'out3')])
    out_file = st.sampled_from([str(d / 'sim.h5'), str(d / 'out' / 'sim.hdf5'), str(d / 'sim.txt')])
    tok, root = st.just(str(d / 'tok.pt')), st.just(str(d / 'TTBar_small.root'))
    # (option, valid values or None for a flag, how often it is given out of 10)
    options = {
        'download': [
            ('--to', out, 9),
            ('--files', st.sampled_from(['JetClass_example_100k.root', 'val.h5', 'nope.h5', '../x', '']), 3),
            ('--mirror', st.sampled_from(MIRRORS), 4),
            ('--retries', st.sampled_from(['0', '1']), 5),
            ('--no-extract', None, 3),
            ('--verify', None, 3),
            ('--quiet', None, 5),
            ('--list', None, 1),
        ],
        'tokenize': [
            ('--tokenizer', tok, 9),
            ('--out', out, 9),
            ('--chunk-size', small, 5),
            ('--max-particles', st.sampled_from(['8', '32', '128']), 5),
            ('--batch-size', small, 5),
            ('--entry-stop', small, 5),
            ('--device', st.just('cpu'), 5),
            ('--overwrite', None, 3),
            ('--quiet', None, 5),
        ],
        'demo': [('--out', out, 9), ('--seed', small, 3), ('--threads', small, 3), ('--n-train', small, 5)],
        'transfer': [
            ('--pretrained', st.one_of(path, out), 9),
            ('--train', root, 9),
            ('--test', root, 9),
            ('--regime', st.sampled_from(['scratch', 'frozen', 'finetune', 'probe']), 3),
            ('--head', st.sampled_from(['summation', 'class_attention', 'mean']), 3),
            ('--steps', small, 5),
            ('--batch-size', small, 3),
            ('--max-jets', small, 5),
            ('--device', st.just('cpu'), 3),
            ('--out', out, 5),
        ],
        'simulate jets': [
            ('--process', st.sampled_from(['TTBar', 'QCD', 'Zprime', 'all', '']), 9),
            ('--n-jets', small, 9),
            ('--seed', small, 3),
            ('--workers', st.sampled_from(['1', '2']), 3),
            ('--chunk-size', small, 3),
            ('--out', out, 9),
            ('--pt-min', st.sampled_from(['400', '500']), 3),
            ('--pt-max', st.sampled_from(['800', '1000']), 3),
            ('--abs-eta-max', st.sampled_from(['1.5', '2']), 3),
            ('--particle-pt-min', st.sampled_from(['0', '0.5']), 3),
            ('--smear', None, 3),
            ('--no-mpi', None, 5),
            ('--quiet', None, 5),
        ],
        'simulate events': [
            ('--process', st.sampled_from(['background', 'Ato4l', 'Zprime', '']), 9),
            ('--n-events', small, 9),
            ('--seed', small, 3),
            ('--workers', st.sampled_from(['1', '2']), 3),
            ('--chunk-size', small, 3),
            ('--out', out_file, 9),
            ('--quiet', None, 5),
        ],
        'simulate lartpc': [
            ('--n-events', small, 9),
            ('--seed', small, 3),
            ('--out', out_file, 9),
            ('--quiet', None, 5),
        ],
        'simulate tracks': [
            ('--detector', st.sampled_from(['barrel2d', 'solenoid3d', 'pixel']), 5),
            ('--n-events', small, 9),
            ('--seed', small, 3),
            ('--out', out, 9),
            ('--n-particles', small, 3),
            ('--noise', st.sampled_from(['0', '0.1']), 3),
            ('--inefficiency', st.sampled_from(['0', '0.1']), 3),
            ('--sigma', st.sampled_from(['0.05', '1']), 3),
            ('--no-scattering', None, 3),
            ('--quiet', None, 5),
        ],
    }
    lightning = [
        ('--ckpt_path', st.sampled_from(['last', 'best', '', 'hpc', str(d / 'corrupt.pt')]), 3),
        ('--data.batch_size', st.sampled_from(['8', '32']), 4),
        ('--data.path', st.just(str(data_dir().parent.parent / 'shared' / 'data' / 'jetclass_500')), 3),
        ('--data.num_workers', st.just('0'), 3),
        ('--trainer.accelerator', st.sampled_from(['cpu', 'auto']), 4),
        ('--trainer.max_epochs', st.just('1'), 3),
        ('--seed_everything', small, 3),
    ]
    generic = [('--out', out, 5), ('--device', st.just('cpu'), 3), ('--n', small, 3), ('--seed', small, 3)]
    argv = command.split()
    if command == 'download':
        argv.append(draw(st.sampled_from(['jetclass-example', 'top-tagging', 'aspen-open-jets', 'nope', ''])))
    if command == 'tokenize' or (command not in options and command not in LIGHTNING):
        argv += draw(st.lists(st.one_of(root, root, path), min_size=1, max_size=2))
    for opt, valid, weight in options.get(command, lightning if command in LIGHTNING else generic):
        if draw(st.integers(0, 9)) < weight:
            argv.append(opt)
            if valid is not None:  # valid, or troublesome of the option's kind, or of any kind
                kind = path if opt in ('--to', '--out', '--tokenizer', '--ckpt_path', '--data.path') else number
                kind = device if 'device' in opt or 'accelerator' in opt else kind
                choice = draw(st.integers(0, 9))
                argv.append(draw(valid if choice < 6 else kind if choice < 9 else anything))
    if command in LIGHTNING:
        argv += [
            '--trainer.fast_dev_run',
            'true',
            '--trainer.logger',
            'false',
            '--trainer.enable_progress_bar',
            'false',
        ]
        argv += ['--trainer.enable_model_summary', 'false', '--trainer.default_root_dir', str(d / 'runs')]
    return argv


def _check(argv):
    from foundation_jets.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))  # an exception escaping here is the traceback a user would see
    text = out.getvalue() + err.getvalue()
    if os.environ.get('FJ_FUZZ_LOG'):
        with open(os.environ['FJ_FUZZ_LOG'], 'a') as f:
            f.write(f'{rc}\t{" ".join(argv)}\t{err.getvalue().strip().splitlines()[-1:]}\n')
    assert isinstance(rc, int), (argv, rc)
    assert 'Traceback' not in text and 'internal error' not in text, f'fj {" ".join(argv)}\n{text[-3000:]}'
    if rc != 0:  # the reason is one line, and the last one
        last = (err.getvalue().strip().splitlines() or [''])[-1]
        assert last.startswith('fj') and ('error:' in last or 'failed:' in last), f'fj {" ".join(argv)}\n{text[-3000:]}'


TOOLS = sorted(REGISTERED_TOOLS)  # every tool `fj` dispatches to, including ones added later (generic options)
QUICK = settings(
    max_examples=int(os.environ.get('FJ_FUZZ_EXAMPLES', 60)),
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
SLOW = settings(  # a Lightning run costs seconds: few examples, and a failure is reported without shrinking
    max_examples=int(os.environ.get('FJ_FUZZ_SLOW_EXAMPLES', 4)),
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


@pytest.mark.parametrize('command', TOOLS)
def test_fuzz_tool_arguments(world, stubs, command):
    @QUICK
    @given(st.data())
    def run(data):
        _check(_argv(data.draw, world, command))

    run()


@pytest.mark.parametrize('command', LIGHTNING)
def test_fuzz_lightning_arguments(world, stubs, command):
    @SLOW
    @given(st.data())
    def run(data):
        _check(_argv(data.draw, world, command))

    run()
