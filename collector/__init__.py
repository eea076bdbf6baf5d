"""The collector: receivers -> decoders -> batcher -> writer."""
