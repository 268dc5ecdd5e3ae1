"""The shared fine-tuning harness: packaged artifacts, model preparation, data mixtures, the training loop."""
