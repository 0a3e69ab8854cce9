"""Pure-PyTorch BERT and DistilBERT classifiers that read and write Hugging Face checkpoints."""
