"""Silent numerical handling in the feature specifications becomes explicit (issue 11, item 8).

Before: one NaN `px` made the OmniJet-α cut drop the whole jet (NaN fails every comparison, so every constituent
left the mask); an infinite energy and a constituent with E < |p| passed. Now:
- a non-finite input value of a real element raises `DataFormatError` naming the column, the jet and the element;
- E < |p| beyond float32 rounding raises, naming the jet (real JetClass jets, with E < |p| by up to 1e-7 from
  rounding in a quarter of their constituents, still pass);
- a jet that legitimately loses every constituent to the cuts is counted in a warning (in the return it is a set
  with `counts == 0`)."""

import math
import warnings

import numpy as np
import pytest
import torch

from foundation_jets.core import DataFormatError, pad_sets
from foundation_jets.data.features import omnijet_spec, part_spec
from foundation_jets.data.jets import load_jetclass_npy


def _jets():
    "Three massless jets of three constituents near (eta, phi) = (0, 0), named like the JetClass branches."
    rng = np.random.default_rng(0)
    sets = []
    for _ in range(3):
        pt, eta, phi = rng.uniform(10, 50, 3), rng.normal(0, 0.1, 3), rng.normal(0, 0.1, 3)
        sets.append(np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1))
    return pad_sets(sets, feature_names=('part_px', 'part_py', 'part_pz', 'part_energy'))


BAD_VALUES = [  # (jet, element, column index, value, column name in the error)
    (1, 2, 0, math.nan, 'part_px'),
    (2, 0, 3, math.inf, 'part_energy'),
]


@pytest.mark.parametrize('spec', [omnijet_spec(), omnijet_spec(cut=False), part_spec('kin')], ids=str)
@pytest.mark.parametrize('jet, element, column, value, name', BAD_VALUES)
def test_non_finite_value_is_an_error_naming_the_jet(spec, jet, element, column, value, name):
    jets = _jets()
    jets.x[jet, element, column] = value
    with pytest.raises(DataFormatError, match=rf"field '{name}'.*jet {jet}, element {element}"):
        spec(jets)


@pytest.mark.parametrize('spec', [omnijet_spec(), part_spec('kin')], ids=str)
def test_energy_below_momentum_is_an_error_naming_the_jet(spec):
    jets = _jets()
    jets.x[0, 1, 3] *= 0.5
    with pytest.raises(DataFormatError, match=r"field 'energy'.*E >= \|p\|.*jet 0, element 1"):
        spec(jets)


def test_padding_values_are_never_read():
    jets = _jets()
    jets.x[0, 2] = math.nan
    jets.mask[0, 2] = False
    out = omnijet_spec()(jets)
    assert torch.isfinite(out.x).all() and out.mask[0].sum() <= 2


def test_real_jets_pass_despite_float32_rounding():
    jets = load_jetclass_npy()
    p = jets.x[..., :3].double().norm(dim=-1)
    assert ((jets.x[..., 3] < p) & jets.mask).any()  # rounding puts E below |p| in real files
    for spec in (omnijet_spec(), part_spec('kin')):
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # no jet of the real sample is emptied by the cuts
            out = spec(jets)
        assert out.mask.any(1).all()


def test_jets_emptied_by_the_cuts_are_reported():
    "Two back-to-back constituents: the axis lies between them, both are 90 degrees away from it."
    jets = _jets()
    jets.x[1] = torch.tensor([[10.0, 0, 0, 10], [-10.0, 1e-3, 0, math.hypot(10, 1e-3)], [0, 0, 0, 0]])
    jets.mask[1] = torch.tensor([True, True, False])
    with pytest.warns(UserWarning, match='1 of 3 sets lost every element to the cuts'):
        out = omnijet_spec()(jets)
    assert out.counts.tolist()[1] == 0 and (out.counts[[0, 2]] > 0).all()  # the return shows them: no element left
