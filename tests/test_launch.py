"""The multi-process recipes of configs/launch run as documented: torchrun.sh starts 2 gloo processes of `fj fit`
on one node, and slurm.sbatch's srun line starts 2 tasks that Lightning wires up from SLURM's variables (srun itself
is emulated: a stand-in starts the tasks with the per-task variables the real srun sets). Both train the smoke twin
of the ParT config to a checkpoint; CPU only."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from foundation_jets.core import shared_data_dir

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / 'configs' / 'launch'
CONFIG = ['configs/part_jetclass.yaml', '--config', 'configs/smoke/part_jetclass.yaml']

FAKE_SRUN = """#!/usr/bin/env bash
# stand-in for srun on one node: start SLURM_NTASKS_PER_NODE tasks with the variables srun gives each task
pids=()
for ((i = 0; i < SLURM_NTASKS_PER_NODE; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NODEID=0 SLURM_NTASKS=$SLURM_NTASKS_PER_NODE "$@" &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""


@pytest.fixture(scope='module')
def jet_files(tmp_path_factory):
    from foundation_jets.data.jets import jetclass_npy_to_root

    d = tmp_path_factory.mktemp('launch_data')
    root = jetclass_npy_to_root(shared_data_dir() / 'jetclass_500', d / 'train.root')
    shutil.copy(root, d / 'val.root')
    return [f'--data.train_files=[{root}]', f"--data.val_files=[{d / 'val.root'}]"]


def env_with_venv(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'MASTER_', 'RANK', 'WORLD_SIZE'))}
    env['PATH'] = f'{Path(sys.executable).parent}:{env["PATH"]}'
    env['PYTHONWARNINGS'] = 'ignore'
    env['OMP_NUM_THREADS'] = '1'
    return env | extra


def check_run(r, run_dir: Path):
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert 'MEMBER: 1/2' in out and 'MEMBER: 2/2' in out, out[-3000:]  # Lightning saw two processes
    ck = torch.load(run_dir / 'checkpoints' / 'last.ckpt', weights_only=False)
    assert ck['global_step'] == 4


def test_torchrun_recipe_two_processes(jet_files, tmp_path):
    run_dir = tmp_path / 'run'
    cmd = ['bash', LAUNCH / 'torchrun.sh', '2', *CONFIG, *jet_files, f'--trainer.default_root_dir={run_dir}']
    r = subprocess.run(
        [str(c) for c in cmd], cwd=ROOT, env=env_with_venv(), capture_output=True, text=True, timeout=600
    )
    check_run(r, run_dir)


def test_slurm_recipe_two_tasks(jet_files, tmp_path):
    fake = tmp_path / 'bin' / 'srun'
    fake.parent.mkdir()
    fake.write_text(FAKE_SRUN)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    run_dir = tmp_path / 'run'
    env = env_with_venv(
        SLURM_JOB_NUM_NODES='1',
        SLURM_NNODES='1',
        SLURM_NTASKS_PER_NODE='2',
        SLURM_JOB_ID='4242',
        SLURM_JOB_NAME='foundation_jets',
        SLURM_NODELIST='localhost',
    )
    env['PATH'] = f'{fake.parent}:{env["PATH"]}'
    cmd = ['bash', LAUNCH / 'slurm.sbatch', *CONFIG, *jet_files, f'--trainer.default_root_dir={run_dir}']
    r = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    check_run(r, run_dir)


def test_scaling_page_quotes_the_recipes_verbatim():
    import json as js

    cells = js.loads((ROOT / 'nbs' / '20c_scaling.ipynb').read_text())['cells']
    text = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown')
    for name in ('torchrun.sh', 'slurm.sbatch'):
        assert (LAUNCH / name).read_text().rstrip('\n') in text, name
