"""The LArTPC and tracking simulators through their command lines.

- regenerating a small sample through the CLI gives byte-identical files (same sha256);
- the files read back through `foundation_jets.data.detectors` (and `read_h5_shard`) and match the in-memory sample;
- bad options and unwritable outputs fail with exit code 2 before any event is generated.
"""

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from foundation_jets.data.detectors import read_pilarnet, read_trackml_event, trackml_to_set
from foundation_jets.data.modules import read_h5_shard
from foundation_jets.simulate import lartpc, tracks


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fj(*argv) -> int:
    "Run `fj ARGV` in-process through the project's entry point when it exists, else the module's cli_main."
    try:
        from foundation_jets.cli import main
    except ImportError:
        mod = {'lartpc': lartpc, 'tracks': tracks}[argv[1]]
        return mod.cli_main(list(argv[2:]))
    return main(list(argv))


def test_lartpc_cli_is_byte_deterministic(tmp_path):
    a, b = tmp_path / 'a.h5', tmp_path / 'b.h5'
    assert fj('simulate', 'lartpc', '--n-events', '3', '--seed', '11', '--out', str(a), '--quiet') == 0
    assert fj('simulate', 'lartpc', '--n-events', '3', '--seed', '11', '--out', str(b), '--quiet') == 0
    assert sha256(a) == sha256(b)
    c = tmp_path / 'c.h5'
    assert fj('simulate', 'lartpc', '--n-events', '3', '--seed', '12', '--out', str(c), '--quiet') == 0
    assert sha256(c) != sha256(a)


def test_lartpc_reader_round_trip(tmp_path):
    out = tmp_path / 'l.h5'
    assert fj('simulate', 'lartpc', '--n-events', '4', '--seed', '3', '--out', str(out), '--quiet') == 0
    events = lartpc.simulate_lartpc(4, seed=3)
    chunks = list(read_pilarnet(out, chunk_size=3))
    assert [len(c) for c in chunks] == [3, 1]
    i = 0
    for ch in chunks:
        for k in range(len(ch)):
            ev, n = events[i], len(events[i]['point'])
            assert int(ch.counts[k]) == n
            np.testing.assert_array_equal(ch.x[k, :n].numpy(), ev['point'])
            np.testing.assert_array_equal(ch.labels[k, :n].numpy(), np.repeat(ev['cluster'][:, 4], ev['cluster'][:, 0]))
            np.testing.assert_array_equal(
                ch.meta['group_id'][k, :n].numpy(), np.repeat(ev['cluster'][:, 2], ev['cluster'][:, 0])
            )
            np.testing.assert_array_equal(
                ch.meta['pid'][k, :n].numpy(), np.repeat(ev['cluster'][:, 5], ev['cluster'][:, 0])
            )
            assert int(ch.meta['n_clusters'][k]) == len(ev['cluster'])
            i += 1
    # cluster 0 is the low-energy-deposition blob, and every voxel is a point on the 768^3 grid
    for ev in events:
        assert ev['cluster'][0, 1:].tolist() == [-1, -1, -1, 4, -1]
        xyz = ev['point'][:, :3]
        assert ((xyz >= 0) & (xyz < lartpc.GRID) & (xyz == np.round(xyz))).all()


def test_tracks_cli_is_byte_deterministic(tmp_path):
    for det, n in (('barrel2d', 20), ('solenoid3d', 3)):
        outs = [tmp_path / f'{det}{k}' for k in range(2)]
        for o in outs:
            assert (
                fj(
                    'simulate',
                    'tracks',
                    '--detector',
                    det,
                    '--n-events',
                    str(n),
                    '--seed',
                    '4',
                    '--out',
                    str(o),
                    '--quiet',
                )
                == 0
            )
        files = sorted(p.name for p in outs[0].iterdir())
        assert files == sorted(p.name for p in outs[1].iterdir()) and files
        assert all(sha256(outs[0] / f) == sha256(outs[1] / f) for f in files)


def test_tracks_reader_round_trip(tmp_path):
    assert (
        fj(
            'simulate',
            'tracks',
            '--detector',
            'solenoid3d',
            '--n-events',
            '2',
            '--seed',
            '9',
            '--out',
            str(tmp_path / 's'),
            '--quiet',
        )
        == 0
    )
    cfg = tracks.TrackingConfig(detector='solenoid3d', n_particles=(50, 50), noise=0.2)
    for i in range(2):
        ev = read_trackml_event(tmp_path / 's', event_id=1000 + i)
        ref = tracks.trackml_tables(tracks.simulate_tracking_event(np.random.default_rng([9, i]), cfg), cfg)
        for k in ('hits', 'truth', 'particles'):
            np.testing.assert_array_equal(ev[k][list(ref[k].columns)].to_numpy(float), ref[k].to_numpy(float))
        s = trackml_to_set(ev)
        assert s.x.shape == (1, len(ref['hits']), 3)
        assert int((s.labels == -1).sum()) == int((ref['truth']['particle_id'] == 0).sum())
    assert (
        fj(
            'simulate',
            'tracks',
            '--detector',
            'barrel2d',
            '--n-events',
            '7',
            '--seed',
            '9',
            '--out',
            str(tmp_path / 'b'),
            '--quiet',
        )
        == 0
    )
    shard = next(read_h5_shard(tmp_path / 'b' / 'barrel2d.h5'))
    ref = tracks.simulate_barrel2d(7, 9, tracks.TrackingConfig(sigma=0.05))
    np.testing.assert_array_equal(shard.x.numpy(), ref.x.numpy())
    np.testing.assert_array_equal(shard.mask.numpy(), ref.mask.numpy())
    np.testing.assert_array_equal(shard.labels.numpy(), ref.labels.numpy())
    np.testing.assert_array_equal(shard.meta['layer'].numpy(), ref.meta['layer'].numpy())


@pytest.fixture
def no_generation(monkeypatch):
    "Make any event generation an error, to prove that bad options fail before it."

    def boom(*a, **k):
        raise AssertionError('generation started')

    monkeypatch.setattr(lartpc, 'simulate_event', boom)
    monkeypatch.setattr(tracks, 'simulate_tracking_event', boom)


@pytest.mark.parametrize(
    'argv',
    [
        ['--n-events', '0', '--out', '{tmp}/x.h5'],
        ['--n-events', 'many', '--out', '{tmp}/x.h5'],
        ['--n-events', '2', '--seed', '-1', '--out', '{tmp}/x.h5'],
        ['--n-events', '2', '--out', '{tmp}/x.txt'],
        ['--n-events', '2', '--out', '{tmp}/missing/x.h5'],
        ['--n-events', '2', '--out', '{tmp}'],
        ['--n-events', '2'],
        ['--n-events', '2', '--out', '{tmp}/x.h5', '--colour', 'red'],
    ],
)
def test_lartpc_bad_options_fail_before_generation(tmp_path, no_generation, argv):
    assert fj('simulate', 'lartpc', *[a.format(tmp=tmp_path) for a in argv]) == 2
    assert not (tmp_path / 'x.h5').exists()


@pytest.mark.parametrize(
    'argv',
    [
        ['--detector', 'pixel', '--n-events', '2', '--out', '{tmp}/o'],
        ['--n-events', '0', '--out', '{tmp}/o'],
        ['--n-events', '2', '--inefficiency', '1.0', '--out', '{tmp}/o'],
        ['--n-events', '2', '--noise', '-0.1', '--out', '{tmp}/o'],
        ['--n-events', '2', '--n-particles', '0', '--out', '{tmp}/o'],
        ['--n-events', '2', '--out', '{tmp}/missing/o'],
        ['--n-events', '2', '--out', '{tmp}/file.txt'],
    ],
)
def test_tracks_bad_options_fail_before_generation(tmp_path, no_generation, argv):
    (tmp_path / 'file.txt').write_text('not a folder')
    assert fj('simulate', 'tracks', *[a.format(tmp=tmp_path) for a in argv]) == 2
    assert not (tmp_path / 'o').exists()


@pytest.mark.skipif(hasattr(os, 'geteuid') and os.geteuid() == 0, reason='root can write anywhere')
def test_unwritable_output_fails_before_generation(tmp_path, no_generation):
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert fj('simulate', 'lartpc', '--n-events', '2', '--out', str(ro / 'x.h5')) == 2
        assert fj('simulate', 'tracks', '--n-events', '2', '--out', str(ro / 'o')) == 2
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)
