"""Datasets in the field's formats, and the project's synthetic data (SynthPEDES, video)."""

from sen_train.data.readers import DatasetError, Sample, read_dataset

__all__ = ["DatasetError", "Sample", "read_dataset"]
