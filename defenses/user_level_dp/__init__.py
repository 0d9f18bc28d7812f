"""User-level differential privacy across silos (ULDP-AVG, Kato et al. 2024)."""
