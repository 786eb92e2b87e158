"""Real data for each modality, as `datasets.Dataset`s with fixed splits (see ../shared/DATA.md)."""
