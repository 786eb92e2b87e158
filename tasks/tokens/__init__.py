"""Your own token sequences from disk as a masked-diffusion task (`task.py`, `data.py`)."""
