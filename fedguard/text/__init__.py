"""Text for the language-model track: a byte-level tokenizer, the bundled public corpus, synthetic
client messages with planted secrets, and text datasets of fixed-length token windows."""
