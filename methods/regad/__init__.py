"""RegAD (Huang et al., ECCV 2022): registration-based few-shot anomaly detection, trained on the
other categories of the target dataset (the harness's leave-one-out mode)."""
