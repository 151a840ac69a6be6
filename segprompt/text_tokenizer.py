"""CLIP's text tokenizer, built offline from the vocabulary open-clip ships.

transformers' ``CLIPTokenizer`` normally comes with a model download
(``vocab.json`` + ``merges.txt``). The ``open-clip-torch`` wheel carries the
same byte-pair-encoding table (``open_clip/bpe_simple_vocab_16e6.txt.gz``),
so segprompt rebuilds the exact OpenAI CLIP vocabulary from it and never needs
the network to turn a phrase into token ids. The vocabulary layout (49 408
entries) is the one of OpenAI's ``clip/simple_tokenizer.py``:

1. the 256 byte-level unicode characters (GPT-2's byte-to-unicode table),
2. the same 256 characters followed by ``</w>`` (end of word),
3. the 48 894 merges in file order (lines 1..48894 after the header), joined,
4. ``<|startoftext|>`` (id 49406) and ``<|endoftext|>`` (id 49407).
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

from .errors import SegpromptError

#: Number of merges CLIP uses: 49 152 - 256 - 2 (the vocabulary is 49 408 ids).
NUM_MERGES = 48894
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
#: CLIP's text encoder has 77 positions.
CONTEXT_LENGTH = 77


def _bytes_to_unicode() -> list[str]:
    """GPT-2's table: printable characters for all 256 byte values, in vocabulary order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def bpe_file() -> Path:
    """Path of ``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``open_clip`` package.

    The package is located without importing it (importing open_clip pulls in
    timm and friends).

    Raises:
        SegpromptError: open-clip-torch is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "bpe_simple_vocab_16e6.txt.gz"
        if candidate.is_file():
            return candidate
    raise SegpromptError(
        "offline CLIP tokenisation needs the BPE vocabulary shipped by open-clip-torch "
        "(open_clip/bpe_simple_vocab_16e6.txt.gz); install it with `pip install open-clip-torch`"
    )


@lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """CLIP's ``(vocab, merges)``: token -> id (49 408 entries) and ``(left, right)`` merge rules in rank order."""
    lines = gzip.open(bpe_file()).read().decode("utf-8").split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1 : NUM_MERGES + 1])
    characters = _bytes_to_unicode()
    tokens = characters + [c + "</w>" for c in characters]
    tokens += ["".join(merge) for merge in merges]
    tokens += [START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}, merges


def clip_tokenizer(directory: str | Path | None = None, *, model_max_length: int = CONTEXT_LENGTH):
    """A transformers ``CLIPTokenizer`` with OpenAI CLIP's real vocabulary.

    Args:
        directory: when given, also save the tokenizer there
            (``save_pretrained``: ``vocab.json``, ``merges.txt``, ...), so that
            ``from_pretrained(directory)`` or a model folder can use it.
        model_max_length: the text encoder's positions (77 for CLIP, 16 for
            OWL-ViT/OWLv2), the length ``padding="max_length"`` pads to.

    Returns:
        ``transformers.CLIPTokenizer``; ``"a photo of a cat"`` encodes to
        ``[49406, 320, 1125, 539, 320, 2368, 49407]``, the ids of the original
        CLIP tokenizer.
    """
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocabulary()
    tokenizer = CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length)
    if directory is not None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(directory))
    return tokenizer

