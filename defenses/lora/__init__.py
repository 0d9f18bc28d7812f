"""Defenses of federated fine-tuning with low-rank adapters (FedRand; FFA-LoRA is the model\nsetting ``adapter: ffa_lora``, see :mod:`fedguard.models.lora`)."""
