"""Privacy attacks on federated language models: canary exposure, extraction, sequence
membership inference and DAGER (exact token recovery from attention-layer gradients)."""
