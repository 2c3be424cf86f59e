"""Readers never exhaust memory on what a file claims (issue 11, item 1).

A 1-2 kB HDF5 file can declare a dataset of 2^40 rows: HDF5 allocates chunks only when they are written, so the
claim costs nothing on disk. Each reader must refuse such a file with a `DataFormatError` that names the file and
the dataset, quickly and within a 2 GB address-space limit (before the fix `read_adc2021` built all 2^30 chunk
ranges up front and died with `MemoryError`). The readers run in a subprocess under `RLIMIT_AS`."""

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from foundation_jets.core import DataFormatError
from foundation_jets.data.detectors import load_adc2021, read_adc2021, write_adc2021_h5
from foundation_jets.data.jets import write_top_tagging_h5

HUGE = 2**40


def _huge_adc(path):
    with h5py.File(path, 'w') as f:
        f.create_dataset('Particles', shape=(HUGE, 19, 4), dtype='f8', chunks=(1024, 19, 4), compression='gzip')
    return path


def _huge_adc_first_chunk_valid(path):
    "The first chunk is written and valid; the other 2^30 - 1 chunks exist only in the shape."
    with h5py.File(path, 'w') as f:
        d = f.create_dataset('Particles', shape=(HUGE, 19, 4), dtype='f8', chunks=(1024, 19, 4), compression='gzip')
        ev = np.zeros((1024, 19, 4))
        ev[:, 0] = (30.0, 0.0, 1.0, 1)
        d[:1024] = ev
    return path


def _huge_contiguous_adc(path):
    with h5py.File(path, 'w') as f:
        f.create_dataset('Particles', shape=(HUGE, 19, 4), dtype='f4')  # contiguous, never allocated
    return path


def _huge_pilarnet(path):
    "Event 0 is valid; `point` and `cluster` claim 2^40 events."
    with h5py.File(path, 'w') as f:
        p = f.create_dataset('point', shape=(HUGE,), dtype=h5py.vlen_dtype(np.float32), chunks=(64,))
        c = f.create_dataset('cluster', shape=(HUGE,), dtype=h5py.vlen_dtype(np.int64), chunks=(64,))
        p[0] = np.ones(16, np.float32)  # two points
        c[0] = np.array([2, 0, 0, 0, 1, 0], np.int64)
    return path


def _huge_aspen(path):
    with h5py.File(path, 'w') as f:
        for k, w in (('jet_kinematics', 4), ('jet_tagging', 13), ('event_info', 3)):
            f.create_dataset(k, shape=(HUGE, w), dtype='f4', chunks=(1024, w))
        f.create_dataset('PFCands', shape=(HUGE, 150, 11), dtype='f4', chunks=(16, 150, 11), compression='gzip')
    return path


def _huge_top(path):
    "A valid top-tagging file whose float block is replaced by one claiming 2^40 rows."
    write_top_tagging_h5(path, np.array([[[1.0, 0, 0, 1]]], np.float32), np.array([1]), n_constituents=1)
    with h5py.File(path, 'r+') as f:
        del f['table/block0_values'], f['table/block1_values']
        f['table'].create_dataset('block0_values', shape=(HUGE, 8), dtype='f4', chunks=(1024, 8))
        f['table'].create_dataset('block1_values', shape=(HUGE, 2), dtype='i8', chunks=(1024, 2))
    return path


CASES = {
    'read_adc2021': (_huge_adc, 'read_adc2021', 'Particles'),
    'load_adc2021': (_huge_adc, 'load_adc2021', 'Particles'),
    'read_adc2021 first chunk valid': (_huge_adc_first_chunk_valid, 'read_adc2021', 'Particles'),
    'read_adc2021 contiguous': (_huge_contiguous_adc, 'read_adc2021', 'Particles'),
    'read_pilarnet': (_huge_pilarnet, 'read_pilarnet', 'point'),
    'read_aspen': (_huge_aspen, 'read_aspen', 'PFCands'),
    'read_top_tagging': (_huge_top, 'read_top_tagging', 'table/block0_values'),
}

CHILD = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
    from foundation_jets.core import DataFormatError
    from foundation_jets.data import detectors, jets
    reader = getattr(detectors, sys.argv[2], None) or getattr(jets, sys.argv[2])
    try:
        out = reader(sys.argv[1])
        if not hasattr(out, 'x'):
            out = sum(len(c) for c in out)
    except DataFormatError as e:
        print('DataFormatError:', e)
        sys.exit(0)
    except MemoryError:
        print('MemoryError')
        sys.exit(3)
    print('no error, read', out)
    sys.exit(4)
    """
)


@pytest.mark.parametrize('case', CASES)
def test_impossible_claim_is_refused_within_2gb(case, tmp_path):
    make, reader, field = CASES[case]
    path = tmp_path / 'claims.h5'
    make(path)
    assert path.stat().st_size < 200_000
    r = subprocess.run([sys.executable, '-c', CHILD, str(path), reader], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert str(path) in r.stdout and f"field '{field}'" in r.stdout, r.stdout
    assert 'rows' in r.stdout, r.stdout


def test_honest_files_still_read(tmp_path):
    "Compressed, chunked and contiguous files that store every row they claim read as before."
    rng = np.random.default_rng(0)
    p = np.zeros((3000, 19, 4), np.float32)
    p[:, 0] = np.c_[rng.exponential(30, 3000), np.zeros(3000), rng.uniform(-3, 3, 3000), np.ones(3000)]
    for comp in ('gzip', None):
        f = write_adc2021_h5(tmp_path / f'adc_{comp}.h5', p, compression=comp)
        assert len(load_adc2021(f)) == 3000
    with h5py.File(tmp_path / 'contiguous.h5', 'w') as h:
        h.create_dataset('Particles', data=p)  # contiguous, allocated
    assert len(load_adc2021(tmp_path / 'contiguous.h5')) == 3000
    with h5py.File(tmp_path / 'early.h5', 'w') as h:  # allocated at creation, never written: all fill values
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((1024, 19, 4))
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        h5py.h5d.create(h.id, b'Particles', h5py.h5t.NATIVE_FLOAT, h5py.h5s.create_simple((3000, 19, 4)), dcpl)
    assert len(load_adc2021(tmp_path / 'early.h5', check_types=False)) == 3000


def test_truncated_contiguous_data_is_refused(tmp_path):
    "A contiguous dataset whose bytes lie past the end of a truncated file."
    p = np.zeros((20000, 19, 4), np.float32)
    p[:, 0, 3] = 1
    with h5py.File(tmp_path / 'c.h5', 'w') as h:
        h.create_dataset('Particles', data=p)
    b = (tmp_path / 'c.h5').read_bytes()
    (tmp_path / 'c.h5').write_bytes(b[: len(b) // 2])
    with pytest.raises(DataFormatError, match="c.h5: field '(Particles|HDF5 file)'"):
        list(read_adc2021(tmp_path / 'c.h5'))


def test_lazy_ranges_yield_the_first_chunk_of_a_long_file(tmp_path):
    "Reading stops when the caller stops: the first chunk of a 3000-event file arrives without reading the rest."
    rng = np.random.default_rng(1)
    p = np.zeros((3000, 19, 4), np.float32)
    p[:, 0] = np.c_[rng.exponential(30, 3000), np.zeros(3000), rng.uniform(-3, 3, 3000), np.ones(3000)]
    f = write_adc2021_h5(tmp_path / 'a.h5', p)
    first = next(read_adc2021(f, chunk_size=100))
    assert len(first) == 100
    assert first.meta['event_index'].tolist() == list(range(100))
