"""Tokenizers that turn each modality into a token stream (images, video, motion,
actions, graphs, text). Not built yet: see the project's tokenizer issue."""
