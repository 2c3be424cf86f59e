"""Training harness: `fj fit` from YAML writes a resumable checkpoint; 2-process DDP equals 1 process;
a run killed mid-training and resumed from `last.ckpt` runs only the remaining steps and equals an
uninterrupted run. Everything trains through `tasks.core.fit`. CPU only, tiny models."""

import os
import subprocess
import sys
from pathlib import Path
import pytest
import torch
import lightning as L
from torch.utils.data import DataLoader, DistributedSampler
from foundation_jets.core import collate_sets, seed_everything
from foundation_jets.data.modules import JetNpyDataModule, SetDataset
from foundation_jets.models.deepsets import DeepSets
from foundation_jets.tasks.classifier import SetClassifier
from foundation_jets.tasks.core import fit
from foundation_jets.toys import ring_sets

ROOT = Path(__file__).resolve().parent.parent
FJ = [sys.executable, '-c', 'import sys; from foundation_jets.cli import main; sys.exit(main())']


def fj(*args, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    return subprocess.run(
        FJ + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m: f'{k}: {m}')


CONFIG = """
trainer:
  max_epochs: {epochs}
  default_root_dir: {root}
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
model:
  class_path: foundation_jets.tasks.classifier.SetClassifier
  init_args:
    num_classes: 2
    lr: 0.01
    model:
      class_path: foundation_jets.models.deepsets.DeepSets
      init_args: {{num_features: 7, num_classes: 2, phi_dims: [16, 16], f_dims: [16]}}
data:
  class_path: foundation_jets.data.modules.JetNpyDataModule
  init_args: {{classes: [QCD, Tbqq], batch_size: 16}}
"""


def test_fj_fit_writes_checkpoint_and_resumes(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / 'cfg.yaml'
    cfg.write_text(CONFIG.format(epochs=2, root=tmp_path))
    r = fj('fit', '--config', cfg, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    last = tmp_path / 'checkpoints' / 'last.ckpt'
    ck = torch.load(last, weights_only=True)
    steps_per_epoch = -(-68 // 16)  # 68 training jets (60% of 48 QCD + 65 Tbqq), batches of 16
    assert ck['epoch'] == 1 and ck['global_step'] == 2 * steps_per_epoch
    assert ck['state_dict']['model.f.2.weight'].shape == (2, 16)
    # resume: two more epochs on top of the last checkpoint (in-process `main`, to spare a Lightning import)
    from foundation_jets.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(['fit', '--config', str(cfg), '--trainer.max_epochs', '4', '--ckpt_path', 'last']) == 0
    ck2 = torch.load(last, weights_only=True)
    assert ck2['epoch'] == 3 and ck2['global_step'] == 4 * steps_per_epoch
    # and the checkpoint evaluates through `fj test`
    capsys.readouterr()
    assert main(['test', '--config', str(cfg), '--ckpt_path', str(last)]) == 0
    assert 'test/auc' in capsys.readouterr().out


def _ddp_task():
    seed_everything(0)
    return SetClassifier(
        DeepSets(num_features=2, num_classes=2, phi_dims=[8, 8], f_dims=[8]),
        lr=0.2,
        weight_decay=0.0,
        optimizer='sgd',
        scheduler=None,
    )


def test_ddp_two_processes_equal_one_process(monkeypatch):
    # Plain SGD. Under DDP Lightning gives each rank a DistributedSampler(shuffle=True, seed=PL_GLOBAL_SEED):
    # rank r reads perm[r::2] of the epoch's permutation. The single process reads the same permutation
    # (a DistributedSampler with one replica) in batches of 16, so every step sees the same 16 sets, and
    # DDP averages the two per-rank mean gradients into the single-process mean gradient.
    monkeypatch.setenv('PL_GLOBAL_SEED', '0')
    ds = SetDataset(ring_sets(64, seed=3))
    single = _ddp_task()
    init = {k: v.clone() for k, v in single.state_dict().items()}
    order = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    fit(single, DataLoader(ds, batch_size=16, sampler=order, collate_fn=collate_sets), epochs=3, device='cpu')
    ddp = _ddp_task()
    assert_same_weights(ddp.state_dict(), init, atol=0)
    loader = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=collate_sets)
    fit(ddp, loader, epochs=3, device='cpu', devices=2, strategy='ddp_spawn')
    moved = max((single.state_dict()[k] - init[k]).abs().max().item() for k in init)
    assert moved > 1e-3  # the run trained
    assert_same_weights(ddp.state_dict(), single.state_dict(), atol=1e-6)


class Crash(L.Callback):
    "Kill the run after `step` optimizer steps (mid-epoch), as a node failure would."

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise RuntimeError('simulated crash')


class StepCounter(L.Callback):
    "Count the optimizer steps this process actually runs, and the global step it starts from."

    def __init__(self):
        self.steps, self.start = 0, None

    def on_train_start(self, trainer, pl_module):
        self.start = trainer.global_step

    def on_train_batch_end(self, trainer, *args):
        self.steps += 1


def _resumable_run(ckpt_dir, epochs=4, callbacks=(), resume=False):
    seed_everything(0)
    task = SetClassifier(DeepSets(num_features=7, num_classes=2, phi_dims=[16], f_dims=[16]), lr=3e-3, warmup_steps=3)
    dm = JetNpyDataModule(classes=['QCD', 'Tbqq'], batch_size=16, shuffle=True, seed=1)
    result = fit(
        task,
        dm,
        epochs=epochs,
        device='cpu',
        checkpoint_dir=ckpt_dir,
        resume=resume,
        callbacks=callbacks,
        deterministic=True,
    )
    return task, result


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    full, full_result = _resumable_run(tmp_path / 'full')
    total = full_result.steps  # 4 epochs of 5 steps (68 training jets, batches of 16)
    assert (total, full_result.steps_run) == (20, 20)
    with pytest.raises(RuntimeError, match='simulated crash'):
        _resumable_run(tmp_path / 'killed', callbacks=[Crash(step=12)])  # killed in epoch 3
    ck = torch.load(tmp_path / 'killed' / 'last.ckpt', weights_only=True)
    assert ck['global_step'] == 10  # the last completed epoch
    counter = StepCounter()
    resumed, result = _resumable_run(tmp_path / 'killed', callbacks=[counter], resume=True)
    # the resumed run starts at the checkpoint's step and executes only the remaining optimizer steps
    assert (counter.start, counter.steps, result.steps_run, result.steps) == (10, total - 10, total - 10, total), (
        f'resumed run: started at step {counter.start}, ran {counter.steps} steps (steps_run {result.steps_run}), '
        f'ended at {result.steps}; expected to start at 10 and run the remaining {total - 10} of {total}'
    )
    assert_same_weights(resumed.state_dict(), full.state_dict(), atol=1e-6)
    final = torch.load(tmp_path / 'killed' / 'last.ckpt', weights_only=True)['state_dict']
    assert_same_weights(final, full.state_dict(), atol=1e-6)
