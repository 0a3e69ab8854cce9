"""What bench.py and scripts/bench_diagnostics.py measure with, composed from models/, data/, cmi/ and harness/
(the recipe pieces train.py is built from). The two scripts import from here and never from each other.

- timing:      contenders alternated in one process, paired ratios, peak memory, FLOPs, the matrix-product rate
- contenders:  the presets, and a model ready to train as train.py trains it (its optimiser, schedule, precision)
- options:     the options both scripts share, checked before anything is measured
- measuring:   every section on every preset, the results file and its Markdown
"""
