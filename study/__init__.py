"""Studying finished runs: what report.py (and sweep.py's grid) use, apart from running a job (harness/). It reads
run folders and never imports models/.

- sweeps:   the grid of runs behind Tables I and II, their folders and results, the runs teachers come from
- reading:  a sweep folder read back, each file once; runs it cannot read listed with the reason
- arms:     a report's runs grouped by task, setting and arm; pooled seeds; the pairs checked to differ in their arm only
- stats:    paired t-tests, confidence intervals, pooling over tasks, what best-of selection gains by chance
- markdown: the tables of report.py and bench.py
"""
