"""Differential-privacy mechanisms: DP-FedAvg (clipping, central and distributed Gaussian noise),
adaptive clipping, randomized quantization, discrete noise for secure aggregation and DP-BREM.

Every mechanism returns what it did as :mod:`fedguard.privacy.events`; only
:mod:`fedguard.privacy` turns those into ε. Kernels live in :mod:`defenses.dp.kernels`.
"""
