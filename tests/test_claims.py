"""The method's central claim, on real weights and data: minimising the CMI term lowers the CMI of the training
features, maximising it raises it, against plain CE under the same protocol."""
import train
from conftest import GLUE, MINILM, metric_lines


def test_min_lowers_and_max_raises_the_train_cmi_on_real_weights(tmp_path):
    """The directions of eqs. (13)-(16) on the real all-MiniLM-L6-v2 and 320 real CoLA sentences, one epoch:
    min-CMI (exact `epoch` centroids) ends below plain CE, max-CMI (`batch` centroids) above it."""
    cmi = {}
    for mode in ("ce", "min", "max"):
        argv = ["--task", "cola", "--model", str(MINILM), "--data-dir", str(GLUE), "--out", str(tmp_path / mode),
                "--max-train-samples", "320", "--max-eval-samples", "64", "--epochs", "1", "--lr", "5e-5",
                "--mode", mode, "--lam", "100"]
        train.main(argv)
        cmi[mode] = metric_lines(tmp_path / mode)[0]["train_cmi"]
    assert cmi["min"] < 0.5 * cmi["ce"] and cmi["max"] > 1.5 * cmi["ce"], cmi
