"""edge-msa: on-device streaming multimodal sentiment analysis."""

import os

# Defensive: no library may try to reach a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"
