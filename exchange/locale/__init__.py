"""The pages' catalogues: ``<language>/LC_MESSAGES/messages.po``, compiled when first used.

``messages.pot`` is what ``pybabel extract -F babel.cfg`` finds in the source; see
``docs/languages.md`` for adding a language.
"""
