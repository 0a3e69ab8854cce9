"""Paths every test file shares: the real data and checkpoint in ../shared beside the repository."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GLUE = SHARED / "glue"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
