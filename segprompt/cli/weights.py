"""Name the running verb's flag for local weights when the weights a backend needs are not here.

The core's :class:`~segprompt.errors.WeightsUnavailableError` says where to put
a copy; only the verb knows which of its flags points at one instead
(``segment --model-dir``, ``tune --base``, ``--checkpoint`` ...). The verb
wraps the call that loads weights::

    with local_weights_flags(transformers="--base DIR"):
        base = load_base(args.base)
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from ..errors import WeightsUnavailableError


@contextlib.contextmanager
def local_weights_flags(**flag_by_kind: str) -> Iterator[None]:
    """Re-raise a :class:`WeightsUnavailableError` of a kind in ``flag_by_kind`` with ``or pass FLAG`` added.

    ``flag_by_kind``: ``sam=`` / ``transformers=`` the flag and its metavar, as the verb's ``--help`` shows them.
    """
    try:
        yield
    except WeightsUnavailableError as exc:
        flag = flag_by_kind.get(exc.kind)
        if flag is None:
            raise
        message = str(exc)
        advice = f" Or pass {flag}." if message.endswith(".") else f"; or pass {flag}"
        raise WeightsUnavailableError(message + advice, exc.kind) from exc
