"""APT: meta-guided prompt tuning with target focus and locality-aware attention (the flagship).

``model`` is the Method (fit / predict), ``smgs`` the meta-guided training
loop (eqs. 7-10), ``cfg`` the synthetic anomaly features with target focus,
``lat`` the locality mask for the LAT blocks.
"""
