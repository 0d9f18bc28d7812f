"""DP-FTRL: correlated noise across rounds through a factorization ``A = B·C`` of the prefix-sum
workload — tree aggregation with restarts (plain or Honaker's estimator) and banded matrix
factorization (BandMF), as server transforms over clipped client updates.

Maths (numpy, no torch) is in :mod:`~defenses.dp_ftrl.tree_factorization`,
:mod:`~defenses.dp_ftrl.banded_factorization` and :mod:`~defenses.dp_ftrl.sensitivity`; the
streaming noise in :mod:`~defenses.dp_ftrl.streaming_noise`; the privacy events in
:mod:`~defenses.dp_ftrl.accounting` (event type :class:`fedguard.privacy.matrix_events.MatrixGaussian`).
"""
