"""A script's measuring and its results: every section on every preset, the results file (the setting, every
row), and the same as Markdown."""
import datetime
import json
import logging
import os
import platform
import sys
from pathlib import Path

import torch

from benchmark.contenders import Preset, Section, transformers
from common.files import write_file
from data.tasks import DataError
from harness.runtime import Runtime


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def save(results: dict, out: Path) -> None:
    """Write the results; when that fails, print them as JSON first, so that no measurement is lost."""
    text = json.dumps(results, indent=2) + "\n"
    try:
        write_file(out, lambda f: f.write(text.encode()))
    except OSError as e:
        print(text)
        raise DataError(f"--out {out}: writing failed ({e.strerror or e}); the results are printed above as JSON") from None


def report(results: dict, sections: dict[str, Section]) -> str:
    """The results as Markdown: the setting, then each measured section's table."""
    meta = results["meta"]
    head = (f"{meta['date']}, {meta['device']}, {meta['threads']} threads, {meta['precision']}, torch "
            f"{meta['torch']}, transformers {meta['transformers']}\n`{meta['command']}`")
    return "\n\n".join([head] + [section.table(results[name]) for name, section in sections.items() if results[name]])


def measure(args, runtime: Runtime, sections: dict[str, Section], data, script: str) -> dict:
    """Every section of --sections on every preset, in that order; the results written to --out, then printed as
    Markdown. `data`: the script's real examples, loaded before anything is measured."""
    modes = (args.compile_modes or ("default,reduce-overhead" if runtime.device.type == "cuda" else "default")).split(",")
    variants = [None] + (modes if runtime.compile else [])  # None: eager
    logging.getLogger("models.checkpoint").setLevel(logging.ERROR)  # the fresh classifier of minilm, expected
    if transformers is not None:
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    autocast = runtime.precision.dtype is not None  # bench's autocast is bf16 (--amp on, or auto on CUDA)
    results = {"meta": {
        "date": datetime.date.today().isoformat(), "command": " ".join([f"python {script}", *sys.argv[1:]]),
        "device": device_name(runtime.device), "threads": torch.get_num_threads(),
        "precision": "float32 and bf16 autocast" if args.amp == "both" else "bf16 autocast" if autocast else "float32",
        "torch": torch.__version__,
        "transformers": transformers.__version__ if transformers is not None else None,
        "compile_modes": [v or "eager" for v in variants], "args": vars(args)}}
    results |= {name: [] for name in sections}
    for name in args.presets:
        print(f"{name}:", flush=True)
        preset = Preset(name, args, runtime, variants, data)
        for section in sections:
            if section in args.sections:
                results[section] += sections[section].measure(preset)
    save(results, Path(args.out))
    print("\n" + report(results, sections) + f"\n\nwritten to {args.out}")
    return results
