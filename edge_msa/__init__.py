"""edge-msa: on-device streaming multimodal sentiment analysis."""

import os

# Defensive: no library may try to reach a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# ONNX Runtime 1.29+ sends telemetry from Linux too (a background thread that
# resolves and calls mobile.events.data.microsoft.com); this turns it off
# completely, if set before its first session. Nothing may leave the device.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__version__ = "0.1.0"
