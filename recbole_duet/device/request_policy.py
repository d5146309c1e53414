"""When a device asks the cloud for new parameters: request policies, decided on the device with numpy alone.

A deployed DUET device keeps the payload of its last request while its history moves on. Asking on every new
interaction (``always``) costs a round trip, a generator pass and a payload each time; never asking (``never``)
leaves the device with the cloud model's global layers. In between:

* ``every_k:K``: ask at the first interaction and then every ``K``-th (the payload is at most ``K - 1``
  interactions old);
* ``drift:T``: ask when the device's code (the generator's summary of its real-time window, which every
  generated layer is decoded from; ``DeviceModel.device_code``) has moved by a cosine distance above ``T`` since
  the code of the last request.

A device keeps one :class:`RequestState` and calls :meth:`RequestState.decide` at each new interaction::

    state = RequestState(parse_policy("drift:0.1"))
    if state.decide(model.device_code(history)):
        payload = request_parameters(url, history[-window:])

The benchmark that replays a test period through each policy is ``benchmarks/request_policies.py``.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Always:
    """Request at every interaction: the freshest parameters, the most requests."""

    needs_code = False

    def wants_request(self, since_last, code, last_code):
        return True

    def __str__(self):
        return "always"


@dataclass(frozen=True)
class Never:
    """Never request: the device scores with the cloud model's global layers (an all-zero update)."""

    needs_code = False

    def wants_request(self, since_last, code, last_code):
        return False

    def __str__(self):
        return "never"


@dataclass(frozen=True)
class EveryK:
    """Request at a device's first interaction and then at every ``k``-th one."""

    k: int
    needs_code = False

    def __post_init__(self):
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"every_k: k must be an integer >= 1, got {self.k!r}")

    def wants_request(self, since_last, code, last_code):
        return since_last is None or since_last >= self.k

    def __str__(self):
        return f"every_k:{self.k}"


@dataclass(frozen=True)
class Drift:
    """Request at a device's first interaction and whenever its code's cosine distance to the code of its last
    request exceeds ``threshold`` (0: every change asks; 2: never asks again)."""

    threshold: float
    needs_code = True

    def __post_init__(self):
        if not (isinstance(self.threshold, (int, float)) and 0 <= self.threshold <= 2):
            raise ValueError(f"drift: threshold must be a cosine distance in [0, 2], got {self.threshold!r}")

    def wants_request(self, since_last, code, last_code):
        if since_last is None:
            return True
        return cosine_distance(code, last_code) > self.threshold

    def __str__(self):
        return f"drift:{self.threshold:g}"


def cosine_distance(a, b):
    """``1 - cos(a, b)`` of two codes (0 for a zero vector against anything: nothing moved that can be seen)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return 0.0 if norms == 0 else float(1.0 - np.dot(a, b) / norms)


POLICIES = {"always": Always, "never": Never, "every_k": EveryK, "drift": Drift}


def parse_policy(text):
    """``always``, ``never``, ``every_k:<k>`` or ``drift:<threshold>`` -> a policy; a bad one fails in one line."""
    name, _, setting = str(text).partition(":")
    if name not in POLICIES:
        raise ValueError(f"request policy {text!r}: unknown, expected one of always, never, every_k:<k>, drift:<t>")
    if name in ("always", "never"):
        if setting:
            raise ValueError(f"request policy {text!r}: '{name}' takes no setting")
        return POLICIES[name]()
    try:
        value = int(setting) if name == "every_k" else float(setting)
    except ValueError:
        raise ValueError(f"request policy {text!r}: '{name}' needs a number after ':'") from None
    return POLICIES[name](value)


class RequestState:
    """One device's request state under ``policy``: interactions since its last request and that request's code."""

    def __init__(self, policy):
        self.policy = policy
        self.since_last = None  # None: never requested yet
        self.last_code = None

    def decide(self, code=None):
        """Whether to request at this interaction (``code``: the device's current code, for ``drift``); a request
        resets the count and keeps ``code`` as the new reference."""
        if self.policy.needs_code and code is None:
            raise ValueError(f"request policy {self.policy}: needs the device's code at every interaction")
        since = None if self.since_last is None else self.since_last + 1
        if self.policy.wants_request(since, code, self.last_code):
            self.since_last, self.last_code = 0, code
            return True
        self.since_last = since
        return False


def replay(policy, codes=None, n=None):
    """The requests a device makes over its interactions in order: a boolean array ``[n]``.

    Args:
        codes (array ``[n, h]``, optional): the device's code at each interaction (``drift`` needs them).
        n (int): the number of interactions, when no codes are given.
    """
    n = len(codes) if codes is not None else n
    state = RequestState(policy)
    return np.array([state.decide(None if codes is None else codes[i]) for i in range(n)], dtype=bool)


def source_of_parameters(requests):
    """For each interaction the index of the one whose request the device's parameters came from (-1: none yet,
    the global layers)."""
    indices = np.where(requests, np.arange(len(requests)), -1)
    return np.maximum.accumulate(indices) if len(indices) else indices
