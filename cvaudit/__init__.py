"""cvaudit: fairness audits of LLM cultural alignment against WVS Wave 7 subgroups.

The code lives in the sub-packages ``cvaudit.audit`` (CLI, survey data, engine,
methods), ``cvaudit.personas``, ``cvaudit.metrics``, ``cvaudit.reports`` and
``cvaudit.templates``. Heavy dependencies are imported lazily.
"""

__version__ = "0.1.0"
