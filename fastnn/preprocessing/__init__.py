"""keras.preprocessing: ``sequence.pad_sequences`` and ``timeseries_dataset_from_array``
(``fastnn.utils`` holds them)."""

from fastnn.preprocessing import sequence
from fastnn.utils.dataset_utils import timeseries_dataset_from_array

__all__ = ["sequence", "timeseries_dataset_from_array"]
