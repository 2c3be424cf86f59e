import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('FJ_SHARED_DATA', str(ROOT.parent / 'shared' / 'data'))
