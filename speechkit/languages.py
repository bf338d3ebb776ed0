"""The one language table: Whisper's language codes and names, and `--language` checking.

Codes and names are Whisper's (openai/whisper `tokenizer.py` LANGUAGES and
TO_LANGUAGE_CODE): what Whisper detects and records, and what `--language` may name.
"""

from __future__ import annotations

import difflib

from speechkit.errors import SpeechkitError

# Whisper's 100 languages, in its token order (code -> lowercase English name).
LANGUAGES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}

# Other names Whisper accepts for some of them (its TO_LANGUAGE_CODE extras).
ALIASES: dict[str, str] = {
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh",
}

_BY_NAME: dict[str, str] = {name: code for code, name in LANGUAGES.items()} | ALIASES


def language_code(value: str) -> str | None:
    """Whisper's code for a code, a name or a regional code (`en`, `English`, `zh-CN`), or None."""
    v = value.strip().lower().replace("_", "-")
    if v in LANGUAGES:
        return v
    if v in _BY_NAME:
        return _BY_NAME[v]
    base = v.split("-")[0]
    return base if "-" in v and base in LANGUAGES else None


def language_name(code: str) -> str:
    """`de` -> `German` (for prompts and tables); an unknown code comes back as given."""
    c = language_code(code)
    return LANGUAGES[c].title() if c else code


def check_language(value: str | None, option: str = "--language") -> str | None:
    """The code for a user's language value; an unknown one is a usage error naming the fix."""
    if value is None:
        return None
    code = language_code(value)
    if code is not None:
        return code
    near = difflib.get_close_matches(value.strip().lower(), [*LANGUAGES, *_BY_NAME], n=1)
    hint = f"did you mean {near[0]}? " if near else ""
    raise SpeechkitError(f"{option} {value!r} is not a language Whisper knows: {hint}give a code "
                         "or an English name, e.g. en, de, zh or english")
