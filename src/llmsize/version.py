"""``__version__``, written once: the API (``llmsize/__init__.py``) re-exports it, and a
module that records or shows the version imports it from here, not from the API, which
imports that module back (``tests/test_architecture.py``).
"""

__version__ = "0.1.0"
