"""Secure aggregation by secret sharing: Bonawitz et al. (2017) and SecAgg+ (Bell et al., 2020).

The server learns the (weighted) sum of the surviving clients' fixed-point encoded updates and
nothing else, even when clients drop out mid-round.

Modules
-------
``fixed_point``  clip / scale / stochastic rounding into Z_R, centred decoding, bit-width choice.
``shamir``       vectorized t-of-n Shamir sharing over GF(2^31 - 1) or GF(2^127 - 1).
``prg``          mask expansion by a ChaCha20 or AES-256-CTR keystream.
``crypto``       X25519, HKDF-SHA256, AES-GCM / ChaCha20-Poly1305, Ed25519 (``cryptography``).
``messages``     the byte format of every protocol message.
``graph``        complete graph (Bonawitz) and random Harary k-regular graph (SecAgg+).
``protocol``     the parties (clients, server) and the in-process simulation with real messages.
``noise``        integer noise hooks for distributed DP (Skellam, discrete Gaussian).
``transport``    :class:`SecAggTransport`, :class:`SecAggPlusTransport` (fedguard transports).
``model_digest`` the SHA-256 of a received model (``model_commitment``).

Threat model
------------
* Semi-honest (honest-but-curious) server and clients; with ``consistency_check=True`` the
  Ed25519-signed consistency round of Bonawitz et al. (their active-adversary variant) is run so
  that a server cannot claim different survivor sets to different clients. Public signing keys
  are assumed distributed by a PKI (simulated in-process).
* Secrecy of one client's input holds as long as fewer than ``t`` holders of its shares collude
  with the server; a threshold below a strict majority of a neighbourhood is refused unless
  ``allow_unsafe_threshold`` is set.
* A malicious server that sends different models to different clients (model inconsistency)
  is stopped only with ``model_commitment=True``: each client's signed SHA-256 of the model it
  received is checked by its neighbours and bound into its pairwise keys, so the round aborts
  (:class:`~defenses.secure_aggregation.errors.ModelCommitmentMismatch`). One crafted model sent
  to every client is not stopped by any variant (see ``attacks/malicious_server``).
* Clipping and any norm-bound check happen **on the client before masking**; they are
  honest-client behaviour only. A malicious client can skip them and submit any element of Z_R:
  secure aggregation gives no robustness, and the server cannot detect such an input. Overflow
  checks protect honest inputs from wrapping around, not the sum from a malicious one.
* Key material, Shamir coefficients, self-mask seeds and nonces come from the operating system's
  CSPRNG (as real cryptography must); the decoded sum is nevertheless reproducible bit for bit,
  because masks cancel exactly in Z_R and every other random choice (stochastic rounding,
  simulated dropouts, DP noise, the SecAgg+ graph) is drawn from the round's generators.

References
----------
.. [1] K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
   Learning", ACM CCS 2017.
.. [2] J. H. Bell, K. A. Bonawitz, A. Gascón, T. Lepoint, M. Raykova, "Secure Single-Server
   Aggregation with (Poly)Logarithmic Overhead", ACM CCS 2020.
.. [3] P. Kairouz, Z. Liu, T. Steinke, "The Distributed Discrete Gaussian Mechanism for Federated
   Learning with Secure Aggregation", ICML 2021.
"""
