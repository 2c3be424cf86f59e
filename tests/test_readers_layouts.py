"""The readers follow the producers' layouts (issue 11, item 9; `../shared/reference/checksums.md`).

Each test writes a small file in the layout seen in the producer's code, once with the package's writer and, where
the writer could hide a mistake, once with plain h5py/uproot, and reads it back:
- ADC2021: `Particles` float64 with `Particles_Names` [Pt, Eta, Phi, Class], `Particles_Classes` and `EvtId`;
- Aspen Open Jets: `PFCands` Cartesian (11 columns), and the 16-column re-skim with `attrs['columns']`, no event_info;
- PILArNet-M v3: `cluster` 6 wide, `cluster_extra` 6 wide with `is_primary` in column 5;
- JetClass-II: an int32 `jet_label` branch (values up to 187) is the label; bool `part_is*`, int32 `part_charge`."""

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot

from foundation_jets.core import DataFormatError
from foundation_jets.data.detectors import (
    ADC2021_PRODUCER_CLASSES,
    ADC2021_PRODUCER_NAMES,
    load_adc2021,
    load_pilarnet,
    write_adc2021_h5,
    write_pilarnet_h5,
)
from foundation_jets.data.jets import (
    AOJ_PRODUCER_COLUMNS,
    load_jetclass,
    read_aspen,
    write_aspen_h5,
    write_jetclass_root,
)
from foundation_jets.core import collate_sets


def _adc_events(n=7, seed=0):
    rng = np.random.default_rng(seed)
    p = np.zeros((n, 19, 4))
    p[:, 0] = np.c_[rng.exponential(30, n), np.zeros(n), rng.uniform(-3, 3, n), np.ones(n)]
    p[:, 1] = np.c_[rng.exponential(30, n) + 1, rng.normal(0, 1, n), rng.uniform(-3, 3, n), np.full(n, 2)]
    p[:, 9] = np.c_[rng.exponential(50, n) + 1, rng.normal(0, 1, n), rng.uniform(-3, 3, n), np.full(n, 4)]
    return p + rng.normal(0, 1e-9, p.shape) * (p != 0)  # float64 values that float32 rounds


def test_adc2021_producer_layout_with_the_writer(tmp_path):
    p, evt = _adc_events(), np.arange(100, 107, dtype=np.int64)
    f = write_adc2021_h5(tmp_path / 'bb.h5', p, extra={'EvtId': evt}, dtype=np.float64, producer_names=True)
    with h5py.File(f) as h:
        assert h['Particles'].dtype == np.float64
        assert [v.decode() for v in h['Particles_Names'][()]] == ['Pt', 'Eta', 'Phi', 'Class']
        assert len(h['Particles_Classes']) == 4 and h['EvtId'].dtype == np.int64
    s = load_adc2021(f, features=('pt', 'eta', 'phi', 'type'))
    np.testing.assert_array_equal(s.x.numpy(), p.astype(np.float32))
    assert s.meta['EvtId'].tolist() == evt.tolist()
    assert not any(k.startswith('Particles_') for k in s.meta)


def test_adc2021_producer_layout_raw_h5py(tmp_path):
    "As the producer writes it, with four events (so Particles_Names has one entry per event, and must be skipped)."
    p = _adc_events(4)
    with h5py.File(tmp_path / 'raw.h5', 'w') as h:
        h.create_dataset('Particles', data=p, compression='gzip')
        h.create_dataset('Particles_Names', data=np.array(ADC2021_PRODUCER_NAMES, dtype='S'))
        h.create_dataset('Particles_Classes', data=np.array(ADC2021_PRODUCER_CLASSES, dtype='S'))
        h.create_dataset('EvtId', data=np.arange(4, dtype=np.int64))
    s = load_adc2021(tmp_path / 'raw.h5')
    np.testing.assert_array_equal(s.x.numpy(), p[..., :3].astype(np.float32))
    assert sorted(s.meta) == ['EvtId', 'event_index', 'slot_type']


def test_adc2021_names_in_another_order_are_refused(tmp_path):
    with h5py.File(tmp_path / 'swapped.h5', 'w') as h:
        h.create_dataset('Particles', data=_adc_events())
        h.create_dataset('Particles_Names', data=np.array([b'Eta', b'Pt', b'Phi', b'Class']))
    with pytest.raises(DataFormatError, match="swapped.h5: field 'Particles_Names'"):
        load_adc2021(tmp_path / 'swapped.h5')


def _pfcands(n=5, k=6, seed=0):
    rng = np.random.default_rng(seed)
    pf = np.zeros((n, k, 11), np.float32)
    for i in range(n):
        m = rng.integers(1, k + 1)
        pt, eta, phi = np.sort(rng.exponential(30, m))[::-1] + 1, rng.normal(0, 0.3, m), rng.normal(0, 0.3, m)
        pf[i, :m, :4] = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1)
        pf[i, :m, 8:] = np.c_[np.ones(m), np.full(m, 211.0), np.ones(m)]
    return pf


def test_aspen_cartesian_columns(tmp_path):
    pf = _pfcands()
    f = write_aspen_h5(tmp_path / 'aoj.h5', pf, np.tile([400.0, 0, 0, 80.0], (5, 1)))
    s = collate_sets(list(read_aspen(f, max_particles=6, particle_features=AOJ_PRODUCER_COLUMNS)))
    np.testing.assert_array_equal(s.x.numpy(), pf)
    assert s.feature_names[:4] == ('part_px', 'part_py', 'part_pz', 'part_energy')


def test_aspen_reskimmed_16_columns_without_event_info(tmp_path):
    "Re-skimmed shards: 16 named columns (here in another order than the original 11), no event_info."
    pf = _pfcands()
    extra = np.random.default_rng(1).normal(size=pf.shape[:2] + (5,)).astype(np.float32) * (pf[..., 3:4] > 0)
    names = ['pt_rel', 'eta_rel', *AOJ_PRODUCER_COLUMNS[:4], 'phi_rel', *AOJ_PRODUCER_COLUMNS[4:], 'dr', 'log_e']
    cols = np.concatenate([extra[..., :2], pf[..., :4], extra[..., 2:3], pf[..., 4:], extra[..., 3:]], -1)
    f = write_aspen_h5(
        tmp_path / 'skim.h5', cols, np.tile([400.0, 0, 0, 80.0], (5, 1)), columns=names, event_info=False
    )
    with h5py.File(f) as h:
        assert h['PFCands'].shape == (5, 6, 16) and 'event_info' not in h
    s = collate_sets(list(read_aspen(f, max_particles=6, particle_features=('part_px', 'part_energy', 'part_dr'))))
    np.testing.assert_array_equal(s.x[..., 0].numpy(), pf[..., 0])
    np.testing.assert_array_equal(s.x[..., 1].numpy(), pf[..., 3])
    np.testing.assert_array_equal(s.x[..., 2].numpy(), extra[..., 3])
    assert 'run' not in s.meta and 'jet_pt' in s.meta


def test_aspen_16_columns_without_names_are_refused(tmp_path):
    with h5py.File(tmp_path / 'anon.h5', 'w') as h:
        h['PFCands'] = np.zeros((2, 3, 16), np.float32)
        h['jet_kinematics'] = np.zeros((2, 4), np.float32)
        h['jet_tagging'] = np.zeros((2, 13), np.float32)
    with pytest.raises(DataFormatError, match="anon.h5: field 'PFCands'"):
        list(read_aspen(tmp_path / 'anon.h5'))


def _pilarnet_v3_events(n=6, seed=0):
    rng = np.random.default_rng(seed)
    evs = []
    for _ in range(n):
        c = int(rng.integers(1, 5))
        sizes = rng.integers(1, 9, c)
        point = np.c_[rng.integers(0, 768, (sizes.sum(), 3)), rng.lognormal(-1, 1, (sizes.sum(), 5))]
        cl = np.stack([sizes, np.arange(c), np.zeros(c), np.zeros(c), rng.integers(0, 5, c), rng.integers(-1, 5, c)], 1)
        extra = np.c_[rng.normal(size=(c, 5)), rng.integers(0, 2, c)]
        evs.append({'point': point.astype(np.float32), 'cluster': cl.astype(np.int64), 'cluster_extra': extra})
    return evs


def test_pilarnet_v3(tmp_path):
    evs = _pilarnet_v3_events()
    f = write_pilarnet_h5(tmp_path / 'v3.h5', evs, version=3)
    with h5py.File(f) as h:
        assert h['cluster_extra'][0].size == 6 * len(evs[0]['cluster'])
    s = load_pilarnet(f)
    for i, ev in enumerate(evs):
        n = len(ev['point'])
        want = np.repeat(ev['cluster_extra'][:, 5], ev['cluster'][:, 0])
        assert s.meta['is_primary'][i, :n].tolist() == want.astype(int).tolist()
        assert s.meta['pid'][i, :n].tolist() == np.repeat(ev['cluster'][:, 5], ev['cluster'][:, 0]).tolist()
    assert s.meta['pilarnet_version'].unique().tolist() == [3]
    assert load_pilarnet(f, label='is_primary').labels[0, : len(evs[0]['point'])].tolist() == want_first(evs)
    with pytest.raises(DataFormatError, match="field 'cluster_extra"):
        write_pilarnet_h5(tmp_path / 'bad.h5', [{**e, 'cluster_extra': e['cluster_extra'][:, :5]} for e in evs], 3)


def want_first(evs):
    return np.repeat(evs[0]['cluster_extra'][:, 5], evs[0]['cluster'][:, 0]).astype(int).tolist()


def _toy_particles(n=5, seed=0):
    rng = np.random.default_rng(seed)
    out = {b: [] for b in ('part_px', 'part_py', 'part_pz', 'part_energy')}
    for _ in range(n):
        m = int(rng.integers(1, 6))
        pt, eta, phi = rng.exponential(30, m) + 1, rng.normal(0, 0.2, m), rng.normal(0, 0.2, m)
        for b, v in zip(out, (pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta))):
            out[b].append(v.astype(np.float32))
    return out


def test_jetclass2_integer_label(tmp_path):
    labels = np.array([0, 187, 42, 5, 100])
    f = write_jetclass_root(tmp_path / 'jc2.root', _toy_particles(), labels=labels, layout='JetClass-II')
    t = uproot.open(f)['tree']
    assert t['jet_label'].interpretation.to_dtype == np.int32
    assert t['part_isPhoton'].interpretation.content.to_dtype == np.bool_
    assert t['part_charge'].interpretation.content.to_dtype == np.int32
    assert t['jet_nparticles'].interpretation.to_dtype == np.int32
    assert not any(k.startswith('label_') for k in t.keys())
    s = load_jetclass(f, particle_features=('part_px', 'part_isPhoton', 'part_charge'))
    assert s.labels.tolist() == labels.tolist()


def test_jetclass2_raw_uproot_and_bad_label(tmp_path):
    "A JetClass-II-like tree written with plain uproot; a negative jet_label names the jet."
    counts = np.array([2, 1, 3])
    rec = ak.zip({'px': ak.unflatten(np.arange(1.0, 7.0, dtype=np.float32), counts)})
    for name, lab in (('ok.root', [3, 187, 0]), ('neg.root', [3, -1, 0])):
        with uproot.recreate(tmp_path / name) as f:
            f.mktree('tree', {'part': rec.type.content, 'jet_label': np.int32}, counter_name=lambda c: 'n' + c)
            f['tree'].extend({'part': rec, 'jet_label': np.array(lab, np.int32)})
    s = load_jetclass(tmp_path / 'ok.root', particle_features=('part_px',), jet_features=())
    assert s.labels.tolist() == [3, 187, 0]
    with pytest.raises(DataFormatError, match="neg.root: field 'jet_label'.*jet 1"):
        load_jetclass(tmp_path / 'neg.root', particle_features=('part_px',), jet_features=())
