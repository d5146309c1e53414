"""The batch request parser alone, without a bundle or an app: a ``windows`` field that is not a non-empty array
is refused with 422 before anything counts or reads its windows."""

import pytest

from recbole_duet.device.bundle import ItemVocabulary, UnknownItemError
from recbole_duet.serving.requests import RequestError, parse_batch


@pytest.mark.parametrize("windows, kind", [([], "array"), ({"a": ["a"]}, "object"), ("a", "string"), (3, "number")])
def test_windows_must_be_a_non_empty_array(windows, kind):
    vocabulary = ItemVocabulary(["[PAD]", "a"])
    with pytest.raises(RequestError) as error:
        parse_batch({"windows": windows}, vocabulary, 5, max_devices=4)
    assert error.value.status == 422
    assert error.value.message == f"windows: must be a non-empty array of windows, got {kind}"


def test_the_padding_token_is_no_item():
    vocabulary = ItemVocabulary(["[PAD]", "a"])
    assert vocabulary.ids(["a"], "window") == [1]
    with pytest.raises(UnknownItemError) as error:
        vocabulary.ids(["a", "[PAD]"], "window")
    assert str(error.value) == "window[1]: unknown item token '[PAD]'"
