"""Client-side checks of the received model (registry kind ``client_check``): a client that
raises an alarm refuses the round. See :mod:`~defenses.client_checks.parameter_statistics`
(statistics against initialisation and training) and :mod:`~defenses.client_checks.model_jump`
(the jump from the last model the client received); the commitment to the broadcast model bound
into secure aggregation is the transport's ``model_commitment``."""
