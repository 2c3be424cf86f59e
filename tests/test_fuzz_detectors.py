"""Fuzz the detector readers and writers of `foundation_jets.data.detectors`.

Whatever is wrong with a file (truncated, wrong shapes, NaN/inf, empty events, missing datasets, keys or columns),
a reader either raises `DataFormatError` whose message names the file and a field, or returns a batch that is
finite, with zero padding. No other exception escapes, and no NaN reaches a returned batch."""

import os
import re
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from foundation_jets.core import DataFormatError, shared_data_dir
from foundation_jets.data.detectors import (
    ADC2021_SLOTS,
    ADC2021_TYPES,
    load_adc2021,
    load_pilarnet,
    read_trackml_event,
    trackml_to_set,
    write_adc2021_h5,
    write_pilarnet_h5,
    write_trackml_event,
)

FUZZ = settings(
    max_examples=int(os.environ.get("FJ_FUZZ_EXAMPLES", 40)),
    deadline=None,
    derandomize="FJ_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow],
)
FIELD = re.compile(r"field '[^']+'")


def _outcome(path, read):
    "Run `read()`; a failure must be a DataFormatError naming `path` (or a file under it) and a field."
    try:
        s = read()
    except DataFormatError as e:
        msg = str(e)
        assert str(path) in msg, f'message does not name {path}: {msg}'
        assert FIELD.search(msg), f'message names no field: {msg}'
        return None
    assert torch.isfinite(s.x).all(), 'NaN/inf reached a returned batch'
    assert (s.x[~s.mask] == 0).all(), 'padding is not zero'
    for v in s.meta.values():
        if v.is_floating_point():
            assert torch.isfinite(v).all()
    return s


def _fails(path, write):
    "`write()` must raise a DataFormatError naming `path` and a field."
    try:
        write()
    except DataFormatError as e:
        assert str(path) in str(e) and FIELD.search(str(e)), str(e)
    else:
        raise AssertionError(f'no DataFormatError for {path}')


def _adc_events(rng, n):
    p = np.zeros((n, 19, 4), np.float32)
    p[:, 0] = np.c_[rng.exponential(30, n), np.zeros(n), rng.uniform(-3, 3, n), np.ones(n)]
    for name, s in list(ADC2021_SLOTS.items())[1:]:
        k = s.stop - s.start
        real = np.arange(k) < rng.integers(0, k + 1, n)[:, None]
        obj = np.stack(
            [
                rng.exponential(40, (n, k)) + 3,
                rng.normal(0, 1.5, (n, k)),
                rng.uniform(-3, 3, (n, k)),
                np.full((n, k), ADC2021_TYPES[name]),
            ],
            -1,
        )
        p[:, s] = np.where(real[..., None], obj, 0)
    return p


def _raw(path, **datasets):
    with h5py.File(path, 'w') as h:
        for k, v in datasets.items():
            h.create_dataset(k, data=v)


ADC_CORRUPTIONS = [
    'none',
    'truncate',
    'nan',
    'inf',
    'shape',
    'empty',
    'missing',
    'type',
    'negative_pt',
    'garbage',
    'string',
]


@FUZZ
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 25),
    corruption=st.sampled_from(ADC_CORRUPTIONS),
    frac=st.floats(0, 1),
    chunk=st.integers(1, 30),
)
def test_fuzz_adc2021(seed, n, corruption, frac, chunk):
    rng = np.random.default_rng(seed)
    p = _adc_events(rng, n)
    e, s, c = rng.integers(n), rng.integers(19), rng.integers(4)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / 'events.h5'
        if corruption in ('none', 'truncate'):
            write_adc2021_h5(path, p, extra={'process_id': rng.integers(0, 3, n)})
            if corruption == 'truncate':
                b = path.read_bytes()
                path.write_bytes(b[: int(frac * (len(b) - 1))])
        elif corruption in ('nan', 'inf', 'negative_pt', 'type'):
            q = p.copy()
            if corruption == 'negative_pt':
                q[e, s, 0] = -1.0
            elif corruption == 'type':
                q[e, s, 3] = 7.0
            else:
                q[e, s, c] = np.nan if corruption == 'nan' else -np.inf
            _raw(path, Particles=q)
            # the writer refuses the same array, naming the output file
            _fails(Path(d) / 'w.h5', lambda: write_adc2021_h5(Path(d) / 'w.h5', q))
        elif corruption == 'shape':
            shapes = [(n, 19, 3), (n, 18, 4), (n, 19 * 4), (n, 19, 4, 1)]
            _raw(path, Particles=np.zeros(shapes[rng.integers(len(shapes))], np.float32))
            _fails(Path(d) / 'w.h5', lambda: write_adc2021_h5(Path(d) / 'w.h5', p.reshape(n, -1)))
        elif corruption == 'empty':
            _raw(path, Particles=np.zeros((0, 19, 4), np.float32))
        elif corruption == 'missing':
            _raw(path, particles=p)
        elif corruption == 'garbage':
            path.write_bytes(rng.bytes(int(frac * 4000)))
        elif corruption == 'string':
            _raw(path, Particles=np.array([b'pt'] * n))
        out = _outcome(path, lambda: load_adc2021(path, chunk_size=chunk))
        if corruption == 'none':
            assert out is not None
            np.testing.assert_array_equal(out.x.numpy(), p[..., :3])
        if corruption in ('nan', 'inf', 'shape', 'empty', 'missing', 'garbage', 'string', 'negative_pt', 'type'):
            assert out is None


def _pil_events(rng, n_events, version):
    out = []
    for _ in range(n_events):
        c = int(rng.integers(1, 5))
        sizes = rng.integers(1, 12, c)
        point = np.c_[rng.integers(0, 768, (sizes.sum(), 3)), rng.lognormal(-1, 1, (sizes.sum(), 5))].astype(np.float32)
        cols = [sizes, np.arange(c), rng.integers(-1, 3, c), rng.integers(-1, 2, c), rng.integers(0, 5, c)]
        if version == 2:
            cols.append(rng.integers(-1, 5, c))
        ev = {'point': point, 'cluster': np.stack(cols, 1)}
        if version == 2:
            ev['cluster_extra'] = rng.normal(size=(c, 5)).astype(np.float32)
        out.append(ev)
    return out


def _raw_vlen(path, events, keys=('point', 'cluster', 'cluster_extra')):
    with h5py.File(path, 'w') as h:
        for k in keys:
            if not all(k in ev for ev in events):
                continue
            ds = h.create_dataset(k, (len(events),), dtype=h5py.vlen_dtype(np.int64 if k == 'cluster' else np.float32))
            for i, ev in enumerate(events):
                ds[i] = np.ravel(ev[k])


PIL_CORRUPTIONS = [
    'none',
    'truncate',
    'nan',
    'inf',
    'sizes',
    'width',
    'empty_event',
    'no_events',
    'missing_point',
    'missing_cluster',
    'extra_len',
    'semantic',
    'point_len',
    'wrong_version',
    'garbage',
]
PIL_REFUSED = set(PIL_CORRUPTIONS) - {'none', 'truncate', 'extra_len', 'wrong_version'}  # must raise, nothing read


@FUZZ
@given(
    seed=st.integers(0, 2**31),
    n_events=st.integers(1, 6),
    version=st.sampled_from([1, 2]),
    corruption=st.sampled_from(PIL_CORRUPTIONS),
    frac=st.floats(0, 1),
    chunk=st.integers(1, 4),
)
def test_fuzz_pilarnet(seed, n_events, version, corruption, frac, chunk):
    rng = np.random.default_rng(seed)
    evs = _pil_events(rng, n_events, version)
    i = int(rng.integers(n_events))
    ev = evs[i]
    read_version = None
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / 'lartpc.h5'
        if corruption in ('none', 'truncate', 'wrong_version'):
            write_pilarnet_h5(path, evs, version=version)
            if corruption == 'truncate':
                b = path.read_bytes()
                path.write_bytes(b[: int(frac * (len(b) - 1))])
            if corruption == 'wrong_version':
                read_version = 3 - version
        elif corruption == 'garbage':
            path.write_bytes(rng.bytes(int(frac * 4000)))
        else:
            if corruption in ('nan', 'inf'):
                ev['point'] = ev['point'].copy()
                ev['point'][rng.integers(len(ev['point'])), rng.integers(8)] = np.nan if corruption == 'nan' else np.inf
            elif corruption == 'sizes':
                ev['cluster'] = ev['cluster'].copy()
                ev['cluster'][-1, 0] += int(rng.choice([-1, 1]))
            elif corruption == 'width':
                ev['cluster'] = np.c_[ev['cluster'], ev['cluster'][:, :2]]
            elif corruption == 'empty_event':
                ev['point'] = np.zeros((0, 8), np.float32)
                ev['cluster'] = ev['cluster'][:0]
            elif corruption == 'extra_len' and version == 2:
                ev['cluster_extra'] = np.ravel(ev['cluster_extra'])[:-1]
            elif corruption == 'semantic':
                ev['cluster'] = ev['cluster'].copy()
                ev['cluster'][0, 4] = 9
            elif corruption == 'point_len':
                ev['point'] = np.ravel(ev['point'])[: -int(rng.integers(1, 8))]
            keys = {'missing_point': ('cluster', 'cluster_extra'), 'missing_cluster': ('point', 'cluster_extra')}.get(
                corruption, ('point', 'cluster', 'cluster_extra')
            )
            _raw_vlen(path, [] if corruption == 'no_events' else evs, keys)
            read_version = version if corruption == 'width' or (corruption == 'sizes' and rng.random() < 0.5) else None
            if corruption not in ('missing_point', 'missing_cluster', 'no_events', 'point_len', 'extra_len'):
                _fails(Path(d) / 'w.h5', lambda: write_pilarnet_h5(Path(d) / 'w.h5', evs, version=version))
        out = _outcome(path, lambda: load_pilarnet(path, chunk_size=chunk, version=read_version))
        if corruption == 'none':
            assert out is not None
            for k, e in enumerate(evs):
                n = len(e['point'])
                np.testing.assert_array_equal(out.x[k, :n].numpy(), e['point'])
                np.testing.assert_array_equal(
                    out.labels[k, :n].numpy(), np.repeat(e['cluster'][:, 4], e['cluster'][:, 0])
                )
                assert (out.labels[k, n:] == -1).all()
        if corruption in PIL_REFUSED:
            assert out is None


TRACKML = shared_data_dir() / 'trackml_event1000'
HITS, TRUTH = pd.read_csv(TRACKML / 'hits.csv'), pd.read_csv(TRACKML / 'truth.csv')
TM_CORRUPTIONS = [
    'none',
    'truncate',
    'drop_column',
    'nan',
    'inf',
    'text',
    'duplicate',
    'empty_file',
    'header_only',
    'missing_hits',
    'extra_truth_row',
]


@FUZZ
@given(
    k=st.integers(1, 40),
    offset=st.integers(0, 5000),
    table=st.sampled_from(['hits', 'truth']),
    corruption=st.sampled_from(TM_CORRUPTIONS),
    frac=st.floats(0, 1),
    col=st.integers(0, 8),
)
def test_fuzz_trackml(k, offset, table, corruption, frac, col):
    hits, truth = (
        HITS.iloc[offset : offset + k].reset_index(drop=True),
        TRUTH.iloc[offset : offset + k].reset_index(drop=True),
    )
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        files = write_trackml_event(d, 7, hits, truth)
        if corruption == 'extra_truth_row':
            table = 'truth'
        f = files[table]
        text = f.read_text()
        lines = text.splitlines()
        column = lines[0].split(',')[col % len(lines[0].split(','))]
        if corruption == 'truncate':
            f.write_text(text[: int(frac * (len(text) - 1))])
        elif corruption == 'drop_column':
            f.write_text(pd.read_csv(f).drop(columns=column).to_csv(index=False))
        elif corruption in ('nan', 'inf', 'text'):
            df = pd.read_csv(f).astype(object)
            df.loc[int(frac * (len(df) - 1)), column] = {'nan': 'nan', 'inf': '-inf', 'text': 'abc'}[corruption]
            f.write_text(df.to_csv(index=False))
        elif corruption == 'duplicate':
            f.write_text('\n'.join(lines + lines[1:2]) + '\n')
        elif corruption == 'empty_file':
            f.write_text('')
        elif corruption == 'header_only':
            f.write_text(lines[0] + '\n')
        elif corruption == 'missing_hits':
            files['hits'].unlink()
        elif corruption == 'extra_truth_row':
            f.write_text('\n'.join(lines + [f'999999999,{lines[1].split(",", 1)[1]}']) + '\n')

        def read():
            ev = read_trackml_event(d)
            return trackml_to_set(ev, features=('x', 'y', 'z', 'r', 'phi'))

        out = _outcome(d, read)
        if corruption == 'none':
            assert out is not None and out.x.shape == (1, k, 5)
            assert (out.labels[0] == -1).sum().item() == (truth.particle_id == 0).sum()
        if corruption not in ('none', 'truncate'):
            assert out is None
