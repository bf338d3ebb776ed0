"""Whisper's byte-level BPE tokenizer read from a tokenizer.json with the `tokenizers` library
alone: the CTranslate2 engine decodes text with it without importing transformers (over a
second at start-up). It gives the same text and ids as transformers' `WhisperTokenizerFast`."""

from __future__ import annotations

import re
from pathlib import Path

from speechkit.models.whisper_decode import TIME_PRECISION

_TIMESTAMP = re.compile(r"<\|(\d+\.\d+)\|>")  # dropped from decoded text, as transformers does


class WhisperTokenizer:
    """Token ids to text and special-token lookups, with the timestamp tokens that the packaged
    tokenizer.json leaves out added after <|notimestamps|> up to `vocab_size`."""

    def __init__(self, tokenizer_file: Path, vocab_size: int):
        from tokenizers import AddedToken, Tokenizer

        self._tok = Tokenizer.from_file(str(tokenizer_file))
        missing = vocab_size - self._tok.get_vocab_size(with_added_tokens=True)
        self._tok.add_tokens([AddedToken(f"<|{i * TIME_PRECISION:.2f}|>", lstrip=False, rstrip=False,
                                         normalized=False, special=False) for i in range(max(missing, 0))])

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """The text's token ids, without special tokens."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """The text of `ids`, special tokens included and timestamp tokens dropped."""
        return _TIMESTAMP.sub("", self._tok.decode(list(ids), skip_special_tokens=False))

    def token_id(self, token: str) -> int | None:
        """The id of a token such as <|en|>; None when the vocabulary lacks it."""
        return self._tok.token_to_id(token)

    def token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

