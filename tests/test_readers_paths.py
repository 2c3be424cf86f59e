"""Every reader of `data.jets` and `data.detectors` reports a bad path as the project's error, names the jet or
event index *in the file* when a value is not finite, and refuses a negative entry range (issue 11, item 2).

- a missing file: `FileNotFoundError` whose message says "no such file";
- a folder where a file is expected (or a file where a folder is expected): `DataFormatError` that says so;
- NaN at jet 3 read in chunks of 2: the message says "jet 3", not the index inside the chunk;
- `entry_start=-1` (or `start=-1`): `ConfigError`, not a silent read of the last rows."""

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot

from foundation_jets.core import ConfigError, DataFormatError, shared_data_dir
from foundation_jets.data.detectors import (
    load_adc2021,
    load_pilarnet,
    read_adc2021,
    read_pilarnet,
    read_trackml_event,
    write_adc2021_h5,
    write_pilarnet_h5,
)
from foundation_jets.data.jets import (
    content_sha256,
    jetclass_npy_to_root,
    load_jetclass,
    load_jetclass_npy,
    read_aspen,
    read_jetclass,
    read_top_tagging,
    write_aspen_h5,
    write_jetclass_root,
    write_top_tagging_h5,
)

N = 6


def _dense(n=N, k=4, seed=0):
    "(n, k, 4) massless px, py, pz, E; jet i has 1 + i % k constituents, zero padded."
    rng = np.random.default_rng(seed)
    out = np.zeros((n, k, 4), np.float32)
    for i in range(n):
        m = 1 + i % k
        pt, eta, phi = rng.exponential(50, m) + 1, rng.normal(0, 0.3, m), rng.normal(0, 0.3, m)
        out[i, :m] = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1)
    return out


def _jetclass(path):
    d = _dense()
    n = (d[..., 3] > 0).sum(1)
    names = ('part_px', 'part_py', 'part_pz', 'part_energy')
    return write_jetclass_root(path, {b: [d[i, : n[i], k] for i in range(N)] for k, b in enumerate(names)})


def _top(path):
    return write_top_tagging_h5(path, _dense(), np.arange(N) % 2, n_constituents=4)


def _aspen(path, compression=None):
    pf = np.zeros((N, 4, 11), np.float32)
    pf[..., :4] = _dense()
    return write_aspen_h5(path, pf, np.tile([500.0, 0.0, 0.0, 80.0], (N, 1)), compression=compression)


def _adc(path):
    p = np.zeros((N, 19, 4), np.float32)
    p[:, 0] = (30.0, 0.0, 1.0, 1)
    p[:, 9] = (50.0, 0.5, -1.0, 4)
    return write_adc2021_h5(path, p)


def _pilarnet(path):
    rng = np.random.default_rng(0)
    evs = []
    for _ in range(N):
        sizes = rng.integers(1, 5, 3)
        point = np.c_[rng.integers(0, 768, (sizes.sum(), 3)), rng.lognormal(-1, 1, (sizes.sum(), 5))]
        cl = np.stack([sizes, np.arange(3), np.zeros(3), np.zeros(3), rng.integers(0, 5, 3), np.zeros(3)], 1)
        evs.append({'point': point.astype(np.float32), 'cluster': cl.astype(np.int64)})
    return write_pilarnet_h5(path, evs)


FILE_READERS = {  # name -> (writer of a valid file, reader)
    'read_jetclass': (_jetclass, lambda p: list(read_jetclass(p))),
    'load_jetclass': (_jetclass, lambda p: load_jetclass(p)),
    'content_sha256': (_jetclass, lambda p: content_sha256(p)),
    'read_top_tagging': (_top, lambda p: list(read_top_tagging(p))),
    'read_aspen': (_aspen, lambda p: list(read_aspen(p))),
    'read_adc2021': (_adc, lambda p: list(read_adc2021(p))),
    'load_adc2021': (_adc, lambda p: load_adc2021(p)),
    'read_pilarnet': (_pilarnet, lambda p: list(read_pilarnet(p))),
    'load_pilarnet': (_pilarnet, lambda p: load_pilarnet(p)),
}


@pytest.mark.parametrize('name', FILE_READERS)
def test_valid_file_reads(name, tmp_path):
    write, read = FILE_READERS[name]
    read(write(tmp_path / 'ok.h5'))


@pytest.mark.parametrize('name', FILE_READERS)
def test_missing_file_says_no_such_file(name, tmp_path):
    with pytest.raises(FileNotFoundError, match='no such file'):
        FILE_READERS[name][1](tmp_path / 'absent.h5')


@pytest.mark.parametrize('name', FILE_READERS)
def test_folder_given_as_file_says_folder(name, tmp_path):
    (tmp_path / 'a_folder.h5').mkdir()
    with pytest.raises(DataFormatError, match='is a directory') as e:
        FILE_READERS[name][1](tmp_path / 'a_folder.h5')
    assert 'a_folder.h5' in str(e.value)


def test_npy_sample_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such'):
        load_jetclass_npy(tmp_path / 'absent')
    with pytest.raises(FileNotFoundError, match='no such'):
        jetclass_npy_to_root(tmp_path / 'absent', tmp_path / 'x.root')
    (tmp_path / 'file').write_text('x')
    with pytest.raises(DataFormatError, match='is a file, not a directory'):
        load_jetclass_npy(tmp_path / 'file')
    src = shared_data_dir() / 'jetclass_500'
    (tmp_path / 'sample').mkdir()
    for k in ('pf_vectors', 'labels'):
        (tmp_path / 'sample' / f'{k}.npy').write_bytes((src / f'{k}.npy').read_bytes())
    (tmp_path / 'sample' / 'pf_mask.npy').mkdir()  # a folder where a file is expected
    with pytest.raises(DataFormatError, match='is a directory'):
        load_jetclass_npy(tmp_path / 'sample')


def test_trackml_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such file or folder'):
        read_trackml_event(tmp_path / 'absent')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataFormatError, match='no hits CSV in the folder'):
        read_trackml_event(tmp_path / 'empty')
    (tmp_path / 'dirs').mkdir()
    (tmp_path / 'dirs' / 'hits.csv').mkdir()
    with pytest.raises(DataFormatError, match='is a directory'):
        read_trackml_event(tmp_path / 'dirs')


# ---------------------------------------------------------------- NaN locations are file indices


def test_aspen_nan_names_the_jet_in_the_file(tmp_path):
    f = _aspen(tmp_path / 'aoj.h5')
    with h5py.File(f, 'r+') as h:
        h['PFCands'][3, 0, 0] = np.nan
    with pytest.raises(DataFormatError, match='jet 3'):
        list(read_aspen(f, chunk_size=2))
    f = _aspen(tmp_path / 'aoj2.h5')
    with h5py.File(f, 'r+') as h:
        h['jet_kinematics'][5, 1] = np.inf
    with pytest.raises(DataFormatError, match="field 'jet_kinematics'.*jet 5"):
        list(read_aspen(f, chunk_size=2))


def test_top_tagging_nan_names_the_jet_in_the_file(tmp_path):
    f = _top(tmp_path / 'top.h5')
    with h5py.File(f, 'r+') as h:
        h['table/block0_values'][3, 1] = np.nan  # PX_0 of jet 3
    with pytest.raises(DataFormatError, match="field 'PX_0'.*jet 3"):
        list(read_top_tagging(f, chunk_size=2))


def _raw_jetclass(path, px):
    "A TTree with one jagged part_px branch and no labels, bypassing the writer's checks."
    counts = np.array([len(v) for v in px])
    rec = ak.zip({'px': ak.unflatten(np.concatenate(px).astype(np.float32), counts)})
    with uproot.recreate(path) as f:
        f.mktree('tree', {'part': rec.type.content}, counter_name=lambda c: 'n' + c)
        f['tree'].extend({'part': rec})
    return path


def test_jetclass_nan_names_the_jet_in_the_file(tmp_path):
    px = [np.ones(k + 1) for k in range(N)]
    px[3][2] = np.nan
    f = _raw_jetclass(tmp_path / 'nan.root', px)
    with pytest.raises(DataFormatError, match="field 'part_px'.*jet 3, constituent 2"):
        list(read_jetclass(f, chunk_size=2, particle_features=['part_px'], jet_features=[]))


# ---------------------------------------------------------------- negative entry ranges


@pytest.mark.parametrize(
    'name, read',
    [
        ('read_jetclass', lambda p, s, e: list(read_jetclass(p, entry_start=s, entry_stop=e))),
        ('read_top_tagging', lambda p, s, e: list(read_top_tagging(p, entry_start=s, entry_stop=e))),
        ('read_aspen', lambda p, s, e: list(read_aspen(p, entry_start=s, entry_stop=e))),
        ('read_adc2021', lambda p, s, e: list(read_adc2021(p, start=s, stop=e))),
        ('read_pilarnet', lambda p, s, e: list(read_pilarnet(p, start=s, stop=e))),
    ],
)
def test_negative_entry_range_is_an_error(name, read, tmp_path):
    f = {
        'read_jetclass': _jetclass,
        'read_top_tagging': _top,
        'read_aspen': _aspen,
        'read_adc2021': _adc,
        'read_pilarnet': _pilarnet,
    }[name](tmp_path / 'f.h5')
    with pytest.raises(ConfigError, match='>= 0'):
        read(f, -1, None)
    with pytest.raises(ConfigError, match='>= 0'):
        read(f, 0, -2)
    with pytest.raises(ConfigError, match='start'):
        read(f, 4, 2)
    assert sum(len(c) for c in read(f, 2, 5)) == 3
    assert sum(len(c) for c in read(f, N, None)) == 0  # starting at the end reads nothing
