"""Studying finished runs: what report.py (and sweep.py's grid) use, apart from running a job (harness/). It reads
run folders and never imports models/.

- sweeps:       the grid of runs behind Tables I and II, their folders and results, the runs teachers come from
- reading:      a sweep folder read back, each file once; runs it cannot read listed with the reason
- arms:         a report's runs grouped by task, setting and arm; pooled seeds; the pairs checked to differ in their
                arm only
- stats:        paired t-tests, confidence intervals, pooling over tasks, what best-of selection gains by chance
- markdown:     the tables of report.py and bench.py

The report, one module per part (document puts them in order):

- document:     the report of a study, its sections in order
- provenance:   its opening (the runs read, pooled, added and left out, their settings) and how the runs were made
- paired:       every arm against its baseline of the same seed, with the t-tests and verdicts
- across_tasks: the arms several tasks have, over those tasks, pooled four ways
- tables:       Tables I and II in the paper's format
- best_of:      what their best-of selection gains with no effect, and the λ chosen held out
- per_task:     each task's λ table, teachers and students
- formatting:   how the numbers print
- plots:        the PNG plots of each task (matplotlib)
"""
