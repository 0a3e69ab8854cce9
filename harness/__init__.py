"""Running a job: what train.py, distill.py, predict.py and bench.py share, composed from models/, data/ and cmi/
(which stand alone). The scripts import from here and never from each other; studying finished runs is study/'s.

- cli:      the options of train.py and distill.py, their ranges, run_main (one line per failure)
- training: set-up, the data of a run, the checks of every input against every other, the loop's wiring
- runfiles: a run's folder and files: locked, written atomically, resumed, replaced without loss, provenance
- timing:   how bench.py and scripts/bench_diagnostics.py time: alternated contenders, paired ratios, FLOPs, the
            matrix-product rate; the presets, their contenders, the options and the results file both share
"""
