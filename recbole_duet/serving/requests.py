"""Reading request bodies: every mistake becomes a :class:`RequestError` whose message names the field.

The service answers these with their 4xx status and keeps serving; nothing a client sends may reach the
generator unchecked.
"""

import json

from recbole_duet.device.bundle import PAYLOAD_DTYPES, UnknownItemError


class RequestError(Exception):
    """A request the service refuses: ``status`` (4xx) and a one-line message naming the field at fault."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _json_type(value):
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def parse_json(body):
    """The JSON value of a request body (bytes)."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise RequestError(400, f"body: not valid JSON ({error})") from None


def _fields(body, required, optional):
    if not isinstance(body, dict):
        raise RequestError(422, f"body: must be a JSON object with field '{required}', got {_json_type(body)}")
    unknown = sorted(set(body) - {required, *optional})
    if unknown:
        raise RequestError(422, f"body: unknown field {unknown[0][:80]!r} (allowed: '{required}', {list(optional)})")
    if required not in body:
        raise RequestError(422, f"{required}: missing")
    return body


def parse_dtype(body):
    dtype = body.get("dtype", "float32")
    if dtype not in PAYLOAD_DTYPES:
        raise RequestError(422, f"dtype: must be one of {list(PAYLOAD_DTYPES)}, got {json.dumps(dtype)[:80]}")
    return dtype


class Window:
    """One device's window as internal ids, and how many older items were dropped to fit the model's window."""

    def __init__(self, ids, received):
        self.ids = ids
        self.received = received

    @property
    def notice(self):
        """What the response says when the window was cut to its newest items (None when it was not)."""
        if self.received == len(self.ids):
            return None
        return {"received": self.received, "kept": len(self.ids), "note": "kept the newest items"}


def parse_window(value, field, vocabulary, window_size):
    """Check ``value`` (item tokens, oldest first) and keep its newest ``window_size`` items."""
    if not isinstance(value, list):
        raise RequestError(422, f"{field}: must be an array of item tokens (strings), got {_json_type(value)}")
    if not value:
        raise RequestError(422, f"{field}: is empty; send at least one item token")
    dropped = max(0, len(value) - window_size)
    newest = value[dropped:]
    try:
        return Window(vocabulary.ids(newest, field, start=dropped), len(value))
    except (UnknownItemError, TypeError) as error:  # TypeError: a value that is not a string
        for position, token in enumerate(newest):  # such a value is named before any unknown token
            if not isinstance(token, str):
                raise RequestError(
                    422, f"{field}[{dropped + position}]: must be a string item token, got {_json_type(token)}"
                ) from None
        raise RequestError(422, str(error)) from None


def parse_generate(body, vocabulary, window_size):
    """``{"window": [...], "dtype"?}`` -> ``([Window], dtype)``."""
    body = _fields(body, "window", ("dtype",))
    return [parse_window(body["window"], "window", vocabulary, window_size)], parse_dtype(body)


def parse_batch(body, vocabulary, window_size, max_devices):
    """``{"windows": [[...], ...], "dtype"?}`` -> ``([Window], dtype)``."""
    body = _fields(body, "windows", ("dtype",))
    windows = body["windows"]
    if not isinstance(windows, list) or not windows:
        raise RequestError(422, f"windows: must be a non-empty array of windows, got {_json_type(windows)}")
    if len(windows) > max_devices:
        raise RequestError(413, f"windows: holds {len(windows)} windows, the limit is {max_devices} a request")
    dtype = parse_dtype(body)
    return [parse_window(value, f"windows[{i}]", vocabulary, window_size) for i, value in enumerate(windows)], dtype
