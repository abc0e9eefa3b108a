"""Every word a person reads on screen, from one catalogue per language.

The catalogues are plain dictionaries in ``lang_en`` and ``lang_id`` with the
same keys; a text may hold ``str.format`` fields such as ``{amount}``. A key
missing from the chosen language falls back to English and is logged once, so
a gap in a translation shows English rather than a raw key.
"""

from __future__ import annotations

import logging
from typing import Any

from kiosk.ui import lang_en, lang_id

log = logging.getLogger(__name__)

CATALOGUES: dict[str, dict[str, str]] = {"en": lang_en.WORDS, "id": lang_id.WORDS}


class Words:
    """The catalogue of one language, called like a function: ``t("key")``."""

    def __init__(self, language: str) -> None:
        if language not in CATALOGUES:
            log.warning("no catalogue for language %r; using English", language)
            language = "en"
        self.language = language
        self._words = CATALOGUES[language]
        self._missing: set[str] = set()

    def __call__(self, key: str, **fields: Any) -> str:
        text = self._words.get(key)
        if text is None:
            if key not in self._missing:
                self._missing.add(key)
                log.warning("no %s text for %r", self.language, key)
            text = lang_en.WORDS.get(key, key)
        return text.format(**fields) if fields else text
