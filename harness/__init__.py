"""Running a job: what train.py, distill.py and predict.py share, composed from models/, data/ and cmi/ (which
stand alone). The scripts import from here and never from each other; studying finished runs is study/'s, bench.py's
machinery benchmark/'s.

- cli:         the options of train.py and distill.py, their ranges and defaults, run_main (one line per failure)
- runtime:     seeds, device, precision, compile, processes (setup), and the module the steps call (Runtime.wrap)
- rundata:     where a run's examples come from, its splits tokenised once, the batches, the check that every model
               reads every batch
- classifiers: loading a classifier through one registry from model_type to class, its head put in the task's
               label order, the fields it records
- runlog:      what a run says as it goes (the start and done lines, TensorBoard, the heartbeat), its settings
- runfiles:    a run's folder and files: locked, written atomically, resumed, replaced without loss, provenance
"""
