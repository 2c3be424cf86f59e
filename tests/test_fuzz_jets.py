"""Fuzz and round-trip tests of the jet readers in `foundation_jets.data.jets`.

Every broken file must fail with a `DataFormatError` whose message names the file and a field,
and no NaN or inf may ever reach a returned batch. Examples are derandomized, so CI is reproducible.
"""

import tempfile
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
import torch
import uproot
from hypothesis import HealthCheck, given, settings, strategies as st

from foundation_jets.core import DataFormatError
from foundation_jets.data.jets import (
    JETCLASS_JET_BRANCHES,
    JETCLASS_LABEL_DTYPES,
    JETCLASS_LABELS,
    load_jetclass,
    read_aspen,
    read_jetclass,
    read_top_tagging,
    write_aspen_h5,
    write_jetclass_root,
    write_top_tagging_h5,
)

FUZZ = settings(deadline=None, max_examples=20, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
N_JETS, N_MAX = 6, 5
FORMATS = ('jetclass', 'top', 'aspen')


def _toy_dense(seed=0):
    "(N_JETS, N_MAX, 4) px, py, pz, E of massless constituents, zero padded, pT-descending; jet i has 1 + i % N_MAX."
    rng = np.random.default_rng(seed)
    out = np.zeros((N_JETS, N_MAX, 4), np.float32)
    for i in range(N_JETS):
        k = 1 + i % N_MAX
        pt = np.sort(rng.exponential(50, k))[::-1] + 1
        eta, phi = rng.normal(0, 0.3, k), rng.normal(0, 0.3, k)
        out[i, :k] = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1)
    return out


DENSE = _toy_dense()
COUNTS = (DENSE[..., 3] > 0).sum(1)
LABELS = np.arange(N_JETS) % len(JETCLASS_LABELS)
PART = ('part_px', 'part_py', 'part_pz', 'part_energy')


def _particles(dense=DENSE):
    return {b: [dense[i, : COUNTS[i], k] for i in range(len(dense))] for k, b in enumerate(PART)}


def _write_valid(fmt, path):
    if fmt == 'jetclass':
        return write_jetclass_root(path, _particles(), labels=LABELS)
    if fmt == 'top':
        return write_top_tagging_h5(path, DENSE, LABELS % 2, n_constituents=8)
    pf = np.zeros((N_JETS, N_MAX, 11), np.float32)
    pf[..., :4] = DENSE
    return write_aspen_h5(path, pf, np.tile([500.0, 0.0, 0.0, 80.0], (N_JETS, 1)))


READERS = {
    'jetclass': lambda p: list(read_jetclass(p, chunk_size=4, max_particles=8)),
    'top': lambda p: list(read_top_tagging(p, chunk_size=4, max_particles=8)),
    'aspen': lambda p: list(read_aspen(p, chunk_size=4, max_particles=8)),
}
SUFFIX = {'jetclass': '.root', 'top': '.h5', 'aspen': '.h5'}


def _outcome(fmt, path, field=None):
    "Read `path`; return 'error' (a well-formed DataFormatError) or 'ok' (clean batches). Anything else fails the test."
    try:
        batches = READERS[fmt](path)
    except DataFormatError as e:
        msg = str(e)
        assert str(path) in msg, msg
        assert "field '" in msg, msg
        if field is not None:
            assert f"field '{field}" in msg or field in msg, (field, msg)
        return 'error'
    for b in batches:
        assert torch.isfinite(b.x).all()
        assert all(torch.isfinite(v.double()).all() for v in b.meta.values())
        assert (b.x[~b.mask] == 0).all()
        assert (b.counts > 0).all()
    return 'ok'


def _raw_root(path, counts, part, jets, labels):
    "Write a TTree with uproot directly, bypassing the writer's checks (so broken content reaches the reader)."
    data, types = {}, {}
    if part:
        rec = ak.zip({k[5:]: ak.unflatten(np.asarray(v), counts) for k, v in part.items()})
        data['part'], types['part'] = rec, rec.type.content
    for k, v in {**jets, **labels}.items():
        data[k], types[k] = v, v.dtype
    with uproot.recreate(path) as f:
        f.mktree('tree', types, counter_name=lambda c: 'n' + c)
        f['tree'].extend(data)
    return path


def _raw_parts():
    flat = {b: np.concatenate(v) for b, v in _particles().items()}
    jets = {b: np.full(N_JETS, 1.0, np.float32) for b in JETCLASS_JET_BRANCHES}
    labels = {b: (LABELS == i).astype(dt) for i, (b, dt) in enumerate(JETCLASS_LABEL_DTYPES.items())}
    return COUNTS.copy(), flat, jets, labels


@pytest.fixture(scope='module')
def valid():
    with tempfile.TemporaryDirectory() as d:
        yield {fmt: _write_valid(fmt, Path(d) / f'valid_{fmt}{SUFFIX[fmt]}').read_bytes() for fmt in FORMATS}


# ---------------------------------------------------------------- plain round trips


def test_jetclass_round_trip(tmp_path):
    p = write_jetclass_root(tmp_path / 'TTBar_000.root', _particles(), labels=LABELS)
    ps = load_jetclass(p, chunk_size=4, max_particles=8)
    assert ps.labels.tolist() == LABELS.tolist()
    assert ps.counts.tolist() == COUNTS.tolist()
    np.testing.assert_array_equal(ps.x[:, :N_MAX].numpy(), DENSE)
    assert ps.meta['jet_nparticles'].tolist() == COUNTS.tolist()
    # without label branches, the class comes from the file-name prefix
    c, part, jets, _ = _raw_parts()
    q = _raw_root(tmp_path / 'TTBarLep_001.root', c, part, jets, {})
    assert load_jetclass(q).labels.tolist() == [JETCLASS_LABELS.index('Tbl')] * N_JETS
    assert load_jetclass(_raw_root(tmp_path / 'jets.root', c, part, jets, {})).labels is None


def test_top_tagging_round_trip(tmp_path):
    p = write_top_tagging_h5(
        tmp_path / 'top.h5', DENSE, LABELS % 2, truth_p4=np.ones((N_JETS, 4)), ttv=1, n_constituents=8
    )
    ps = list(read_top_tagging(p, chunk_size=4, max_particles=N_MAX))
    x = torch.cat([b.x for b in ps]).numpy()
    np.testing.assert_array_equal(x, DENSE)
    assert torch.cat([b.labels for b in ps]).tolist() == (LABELS % 2).tolist()
    assert torch.cat([b.meta['ttv'] for b in ps]).tolist() == [1] * N_JETS


def test_aspen_round_trip(tmp_path):
    pf = np.zeros((N_JETS, N_MAX, 11), np.float32)
    pf[..., :4] = DENSE
    pf[..., 9] = np.where(DENSE[..., 3] > 0, 130.0, 0.0)
    kin = np.tile([500.0, 0.1, -0.2, 80.0], (N_JETS, 1))
    p = write_aspen_h5(tmp_path / 'aoj.h5', pf, kin)
    ps = list(read_aspen(p, chunk_size=4, max_particles=N_MAX, particle_features=('part_px', 'part_pdgid')))
    x = torch.cat([b.x for b in ps]).numpy()
    np.testing.assert_array_equal(x[..., 0], DENSE[..., 0])
    np.testing.assert_array_equal(x[..., 1], pf[..., 9])
    assert torch.cat([b.meta['jet_eta'] for b in ps]).tolist() == pytest.approx([0.1] * N_JETS)
    assert torch.cat([b.meta['event'] for b in ps]).tolist() == list(range(N_JETS))


# ---------------------------------------------------------------- fuzz: truncated and corrupted files


@FUZZ
@given(fmt=st.sampled_from(FORMATS), keep=st.floats(0, 1, exclude_max=True))
def test_truncated_files(valid, fmt, keep):
    with tempfile.TemporaryDirectory() as d:
        data = valid[fmt]
        p = Path(d) / f'cut{SUFFIX[fmt]}'
        p.write_bytes(data[: int(len(data) * keep)])
        if _outcome(fmt, p) == 'ok':  # only bytes no reader needs were cut (ROOT's trailing records): same arrays
            q = Path(d) / f'whole{SUFFIX[fmt]}'
            q.write_bytes(data)
            for a, b in zip(READERS[fmt](p), READERS[fmt](q), strict=True):
                assert torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask)


@FUZZ
@given(
    fmt=st.sampled_from(FORMATS),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=6),
)
def test_corrupted_bytes(valid, fmt, flips):
    """Random byte changes anywhere in a file: a DataFormatError or clean batches (ROOT and HDF5 have no data checksums,
    so a changed value in an uncompressed block can read as valid data)."""
    with tempfile.TemporaryDirectory() as d:
        data = bytearray(valid[fmt])
        p = Path(d) / f'flipped{SUFFIX[fmt]}'
        for pos, x in flips:
            data[int(pos * len(data))] ^= x
        p.write_bytes(bytes(data))
        _outcome(fmt, p)


# ---------------------------------------------------------------- fuzz: NaN and inf


@FUZZ
@given(
    branch=st.sampled_from(PART + ('jet_pt', 'jet_sdmass', 'jet_tau2')),
    pos=st.integers(0, 10**6),
    value=st.sampled_from([np.nan, np.inf, -np.inf, 1e300]),
)
def test_jetclass_nonfinite(branch, pos, value):
    "NaN, inf, and a float64 value that overflows float32 (the batch dtype)."
    c, part, jets, labels = _raw_parts()
    dct = part if branch in part else jets
    arr = dct[branch] = dct[branch].astype(np.float64)
    arr[pos % len(arr)] = value
    with tempfile.TemporaryDirectory() as d:
        p = _raw_root(Path(d) / 'nan.root', c, part, jets, labels)
        assert _outcome('jetclass', p, branch) == 'error'


@FUZZ
@given(
    fmt=st.sampled_from(('top', 'aspen')),
    row=st.integers(0, N_JETS - 1),
    col=st.integers(0, 10**6),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_h5_nonfinite(fmt, row, col, value):
    with tempfile.TemporaryDirectory() as d:
        p = _write_valid(fmt, Path(d) / f'nan{SUFFIX[fmt]}')
        with h5py.File(p, 'r+') as f:
            if fmt == 'top':
                vals = f['table/block0_values']
                j = col % vals.shape[1]
                field = f['table/block0_items'][j].decode()
            else:
                field = ('PFCands', 'jet_kinematics', 'jet_tagging')[col % 3]
                vals = f[field]
                j = (col // 3) % vals.shape[1]
            v = vals[row]
            v[j] = value
            vals[row] = v
        assert _outcome(fmt, p, field) == 'error'


# ---------------------------------------------------------------- fuzz: empty jets, broken labels


@FUZZ
@given(fmt=st.sampled_from(FORMATS), jet=st.integers(0, N_JETS - 1))
def test_empty_jets(fmt, jet):
    with tempfile.TemporaryDirectory() as d:
        if fmt == 'jetclass':
            c, part, jets, labels = _raw_parts()
            keep = np.repeat(np.arange(N_JETS), c) != jet
            part = {k: v[keep] for k, v in part.items()}
            c[jet] = 0
            p = _raw_root(Path(d) / 'empty.root', c, part, jets, labels)
        else:
            p = _write_valid(fmt, Path(d) / f'empty{SUFFIX[fmt]}')
            with h5py.File(p, 'r+') as f:
                if fmt == 'top':
                    v = f['table/block0_values']
                    r = v[jet]
                    r[: 8 * 4] = 0
                    v[jet] = r
                else:
                    v = f['PFCands']
                    r = v[jet]
                    r[:] = 0
                    v[jet] = r
        with pytest.raises(DataFormatError, match='empty'):
            READERS[fmt](p)
        assert _outcome(fmt, p) == 'error'


@FUZZ
@given(jet=st.integers(0, N_JETS - 1), extra=st.integers(0, len(JETCLASS_LABELS) - 1), drop=st.booleans())
def test_jetclass_labels_not_one_hot(jet, extra, drop):
    c, part, jets, labels = _raw_parts()
    names = list(JETCLASS_LABEL_DTYPES)
    if drop:
        labels[names[LABELS[jet]]][jet] = 0  # no label set
    elif extra != LABELS[jet]:
        labels[names[extra]][jet] = 1  # two labels set
    else:
        labels[names[extra]][jet] = 2  # a value that is not 0/1 (int32 branch or float label_QCD)
    with tempfile.TemporaryDirectory() as d:
        p = _raw_root(Path(d) / 'labels.root', c, part, jets, labels)
        if not drop and extra == LABELS[jet] and JETCLASS_LABEL_DTYPES[names[extra]] == np.bool_:
            return  # a bool cannot hold 2
        assert _outcome('jetclass', p, 'label_') == 'error'


# ---------------------------------------------------------------- fuzz: missing keys, wrong shapes and types


@FUZZ
@given(branch=st.sampled_from(PART + JETCLASS_JET_BRANCHES + tuple(JETCLASS_LABEL_DTYPES)))
def test_jetclass_missing_branch(branch):
    c, part, jets, labels = _raw_parts()
    for dct in (part, jets, labels):
        dct.pop(branch, None)
    with tempfile.TemporaryDirectory() as d:
        p = _raw_root(Path(d) / 'missing.root', c, part, jets, labels)
        assert _outcome('jetclass', p, branch) == 'error'


@FUZZ
@given(branch=st.sampled_from(PART + ('jet_pt', 'jet_eta')))
def test_jetclass_wrong_kind(branch):
    "A particle branch stored flat, or a jet branch stored jagged."
    c, part, jets, labels = _raw_parts()
    if branch in part:
        part.pop(branch)
        jets[branch] = np.ones(N_JETS, np.float32)
    else:
        jets.pop(branch)
        part['part_' + branch] = np.ones(int(c.sum()), np.float32)  # becomes jagged branch part_jet_*
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / 'kind.root'
        if branch not in PART:  # write the jagged jet branch under its own name
            data = {k: v for k, v in jets.items()}
            data.update(labels)
            with uproot.recreate(p) as f:
                rec = ak.zip({k[5:]: ak.unflatten(v, c) for k, v in part.items() if k in PART})
                f.mktree(
                    'tree',
                    {
                        'part': rec.type.content,
                        branch: ak.unflatten(np.ones(int(c.sum()), np.float32), c).type.content,
                        **{k: v.dtype for k, v in data.items()},
                    },
                    counter_name=lambda n: 'n' + n,
                )
                f['tree'].extend({'part': rec, branch: ak.unflatten(np.ones(int(c.sum()), np.float32), c), **data})
        else:
            _raw_root(p, c, part, jets, labels)
        assert _outcome('jetclass', p, branch) == 'error'


@FUZZ
@given(
    key=st.sampled_from(('PFCands', 'jet_kinematics', 'jet_tagging', 'event_info')),
    mode=st.sampled_from(('drop', 'shape', 'ndim', 'string')),
)
def test_aspen_missing_or_misshapen(key, mode):
    with tempfile.TemporaryDirectory() as d:
        p = _write_valid('aspen', Path(d) / 'aoj.h5')
        with h5py.File(p, 'r+') as f:
            v = f[key][()]
            del f[key]
            if mode == 'shape':
                f[key] = v[..., :-1]
            elif mode == 'ndim':
                f[key] = v.reshape(len(v), -1)[:, :, None] if v.ndim == 2 else v.reshape(len(v), -1)
            elif mode == 'string':
                f[key] = np.full(v.shape, b'x', dtype='S1')
        assert _outcome('aspen', p, key) == 'error'


@FUZZ
@given(col=st.integers(0, 10**6), mode=st.sampled_from(('drop_column', 'drop_key', 'bad_values')))
def test_top_missing_or_misshapen(col, mode):
    with tempfile.TemporaryDirectory() as d:
        p = _write_valid('top', Path(d) / 'top.h5')
        with h5py.File(p, 'r+') as f:
            g = f['table']
            if mode == 'drop_key':
                f.move('table', 'jets')
                field = 'table'
            else:
                items, vals = g['block0_items'][()], g['block0_values'][()]
                j = col % len(items)
                field = items[j].decode()
                del g['block0_items'], g['block0_values']
                if mode == 'drop_column':
                    g['block0_items'] = np.delete(items, j)
                    g['block0_values'] = np.delete(vals, j, axis=1)
                else:
                    g['block0_items'] = items
                    g['block0_values'] = vals[:, :-1]
                    field = 'block0_values'
        if field.startswith('truth'):
            assert _outcome('top', p) == 'ok'  # truth columns are optional metadata
        else:
            assert _outcome('top', p, field) == 'error'
