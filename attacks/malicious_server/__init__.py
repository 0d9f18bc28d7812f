"""Malicious-server inversion attacks: the server changes the broadcast model (within the task's
architecture) so that the clients' honest FedSGD updates — even only their secure-aggregation
sum — give back individual training samples.

* :mod:`~attacks.malicious_server.robbing_the_fed` — bins on a feature's distribution (Fowl et
  al., ICLR 2022);
* :mod:`~attacks.malicious_server.trap_weights` — trap weights (Boenisch et al., EuroS&P 2023);
* :mod:`~attacks.malicious_server.model_inconsistency` — a different model for one target
  (Pasquini et al., CCS 2022).
"""
