"""The pretrained jet backbones shipped in data/pretrained (made by `bench/pretraining_small_n.py pretrain`) load with
`load_pretrained`, keep the backbone contract, carry their pretraining record, hold trained weights, and plug into
the transfer regimes on jets they never saw (the embedded simulated jets, another seed)."""

from pathlib import Path

import pytest
import torch

from foundation_jets.data.jets import JETCLASS_LABELS, load_embedded_jets
from foundation_jets.models.heads import check_backbone, load_pretrained, rebuild, transfer_model
from foundation_jets.models.jets import JetBackbone
from foundation_jets.tasks.jetpretrain import OBJECTIVES, embedding_spread, jet_pretraining_sets

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / 'data' / 'pretrained').glob('jet_*.pt'))


def moved_from_initialisation(backbone: JetBackbone) -> float:
    "Largest change of the parameters that every initialisation sets to fixed values (LayerNorm gains 1, biases 0)."
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.LayerNorm)]
    return max(max(float((m.weight - 1).abs().max()), float(m.bias.abs().max())) for m in norms)


@pytest.fixture(scope='module')
def jets():
    raw = load_embedded_jets(['Tbqq', 'QCD'], max_particles=64)
    sets = jet_pretraining_sets(raw[::10], 'kin')
    sets.labels = (raw.labels[::10] == JETCLASS_LABELS.index('Tbqq')).long()
    return sets


def test_every_objective_is_shipped():
    assert sorted(p.stem for p in SHIPPED) == sorted(f'jet_{o}' for o in OBJECTIVES)


@pytest.mark.parametrize('path', SHIPPED, ids=lambda p: p.stem)
def test_shipped_backbone(path, jets):
    torch.manual_seed(0)
    objective = path.stem.removeprefix('jet_')
    backbone = load_pretrained(path)
    assert isinstance(backbone, JetBackbone)
    check_backbone(backbone)
    record = backbone.meta['pretraining']
    assert record['objective'] == objective and record['steps'] >= 1000
    assert record['train_loss_last'] < record['train_loss_first']
    assert backbone.causal == (objective == 'ntp')  # NTP pretrains a causal backbone
    assert backbone.feature_spec is not None and backbone.feature_spec.name == 'part_kin'
    with torch.no_grad():
        hidden = backbone(jets.x, jets.mask)
    assert hidden.shape == (*jets.mask.shape, backbone.dim)
    assert torch.isfinite(hidden).all() and not hidden[~jets.mask].any()
    assert moved_from_initialisation(backbone) > 0.01  # the shipped weights are trained ones
    assert moved_from_initialisation(rebuild(backbone)) == 0.0  # a fresh initialisation fails that check
    assert embedding_spread(backbone, jets) > 0.1  # not collapsed on jets it never saw
    model = transfer_model('frozen', backbone, num_classes=2, seed=0)
    logits = model(jets.x, jets.mask)
    logits.sum().backward()
    assert logits.shape == (len(jets), 2)
    assert all(p.grad is None for p in model.backbone.parameters())
