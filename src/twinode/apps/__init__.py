"""What the twin is for: monitoring a stream, early warning, and treatment-plan ranking.

Every job works on the exported twin (``twin.pt`` loaded with TorchScript and its
``twinode.json``), so the same code serves Python, the registry and the CLIs.
"""
