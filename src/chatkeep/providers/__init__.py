"""Models: the interface (:mod:`chatkeep.providers.base`) and the built-in ``demo`` and ``openai:<model>``.

Knows nothing of the database or the web.
"""
