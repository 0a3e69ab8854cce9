"""Tables I and II of arXiv 2502.11258 from a sweep folder (written by sweep.py), as Markdown on stdout.

    python report.py sweeps/glue > report.md
    python report.py sweeps/glue --plots figures   # with matplotlib: dev metric and dev CMI against lambda
    python report.py sweeps/new-seeds --pool sweeps/glue   # the same arms, more seeds: pooled
    python report.py sweeps/cola --add-tasks sweeps/mrpc   # more tasks, from their own folders: over tasks too

Every number is a run's best epoch (by the task's dev metric) from its results.json; a setting's value is
the median over its seeds. First, every arm against the ce run of the same seed: the paired differences, their
t-tests and confidence intervals, and what those show about an effect of a stated size; the arms that several tasks
have, over those tasks. Table I: plain fine-tuning
(ce) against min-CMI fine-tuning at its best lambda, the lambda with the highest median dev metric, with what that
choice gains with no effect at all and how it fares on seeds it was not made on. Table II: the DistilBERT students
of the ce teacher and of the max-CMI teacher, each at its best (alpha, T). Behind each choice, the table of every
setting with each seed's value, and which teachers were selected and why. Metrics print as percentages, like the
paper. Needs scipy (pip install -e ".[stats]").
"""
import argparse
import sys
from pathlib import Path

from common.optional import MissingPackage
from study.arms import load_study
from study.document import markdown, report  # noqa: F401  report.report(SWEEP): the tests read it
from study.paired import DELTA
from study.plots import pyplot, write_plots
from study.stats import scipy_stats, selection_gain  # noqa: F401  docs/design.md, the tests: report.selection_gain


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="the sweep folder (sweep.py --out)")
    parser.add_argument("--plots", help="folder for the PNG plots, one per task (default: SWEEP/plots; "
                                        "needs matplotlib)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    parser.add_argument("--with", dest="more", action="append", default=[], metavar="DIR",
                        help="another sweep folder whose runs are more arms, paired with SWEEP's ce runs (an arm "
                             "that differs by a flag, e.g. --cmi-feature cls); repeatable")
    parser.add_argument("--pool", metavar="DIR",
                        help="another sweep folder of the same protocol whose runs are more seeds of SWEEP's arms "
                             "(its other arms are left out); refused when an arm's recorded settings differ other "
                             "than by seed and folder, or a seed is in both")
    parser.add_argument("--add-tasks", dest="added", action="append", default=[], metavar="DIR",
                        help="another sweep folder whose tasks SWEEP does not have (a study of another task, run to "
                             "its own folder): reported beside SWEEP's, and the arms they share summarised over "
                             "tasks; repeatable")
    parser.add_argument("--delta", type=float, default=DELTA, metavar="POINTS",
                        help="the effect size, in metric points, that each arm's verdict says is shown, excluded or "
                             "neither, from the 95%% confidence interval of its paired differences (default: "
                             "%(default)g)")
    args = parser.parse_args(argv)
    for folder in [args.sweep, *args.more, *([args.pool] if args.pool else []), *args.added]:
        if not Path(folder).is_dir():
            parser.exit(2, f"error: {folder} is not a folder\n")
    if not args.delta > 0:
        parser.exit(2, f"error: --delta {args.delta}: must be above 0\n")
    try:  # the optional packages the report needs (setup.py's extras), before anything is read
        scipy_stats()
        if not args.no_plots:
            pyplot()
    except MissingPackage as e:
        parser.exit(2, f"error: {e}\n")

    # -------------------------------------------------------------------------
    # the study: every folder read once, checked
    try:
        study = load_study(Path(args.sweep), [Path(f) for f in args.more], args.pool and Path(args.pool),
                           [Path(f) for f in args.added])
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")

    # -------------------------------------------------------------------------
    # the report on stdout, then the plots
    print(markdown(study, args.delta))
    if args.no_plots:
        return
    folder = Path(args.plots) if args.plots else study.sweep.folder / "plots"
    try:
        for path in write_plots(study.tasks, folder, args.delta):
            print(f"wrote {path}", file=sys.stderr)
    except OSError as e:  # a read-only sweep folder: the report is printed, the plots cannot be
        parser.exit(2, f"error: {folder}: cannot write the plots ({e.strerror or e}); pass --plots DIR or --no-plots\n")


if __name__ == "__main__":
    main()
