"""Whether two outputs of scripts/same_behaviour.sh hold the same run files, timings and provenance aside: the
check that a refactor left behaviour unchanged.

    python scripts/same_files.py runs-before runs-after
"""
import argparse
import json
import sys
from pathlib import Path

SKIP = {"epoch_seconds", "samples_per_s", "seconds", "provenance", "out", "teacher", "date"}  # not behaviour


def clean(obj):
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items() if k not in SKIP}
    return [clean(v) for v in obj] if isinstance(obj, list) else obj


def load(path: Path):
    if path.suffix == ".jsonl":
        return [clean(json.loads(line)) for line in path.read_text().splitlines()]
    return clean(json.loads(path.read_text())) if path.suffix == ".json" else path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    files = sorted(p.relative_to(args.before) for p in args.before.rglob("*")
                   if p.suffix in (".json", ".jsonl", ".tsv") and "best" not in p.parts)
    differ = [f for f in files if not (args.after / f).exists() or load(args.before / f) != load(args.after / f)]
    for f in differ:
        print(f"differs: {f}")
    print(f"{len(files)} files compared, {len(differ)} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
