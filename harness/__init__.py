"""The training harness: what the scripts (train.py, distill.py, predict.py, sweep.py, report.py, bench.py)
share, composed from models/, data/ and cmi/ (which stand alone). The scripts import from here and never from
each other.

- cli:      the options of train.py and distill.py, their ranges, run_main (one line per failure)
- training: set-up, the data of a run, the checks of every input against every other, the loop's wiring
- runfiles: a run's folder and files: locked, written atomically, resumed, replaced without loss, provenance
- sweeps:   the grid of runs behind Tables I and II, their folders and results, the runs teachers come from
- reading:  a sweep folder read back for report.py, each file once; runs it cannot read listed with the reason
- stats:    report.py's statistics: paired t-tests, confidence intervals, what best-of selection gains by chance
- timing:   how bench.py times: alternated contenders, paired ratios, FLOPs, the matrix-product rate
- markdown: the tables of report.py and bench.py
"""
