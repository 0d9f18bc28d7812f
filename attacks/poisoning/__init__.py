"""Model- and data-poisoning attacks run by malicious clients."""
