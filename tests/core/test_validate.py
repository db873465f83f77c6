"""The one integer validator: the error type each call site expects, a message naming the value."""

from __future__ import annotations

import argparse

import pytest

from jv3_integrations.core import ConfigurationError, InputError, InputTypeError
from jv3_integrations.core._validate import check_int, check_int_or_none


def test_configuration_values() -> None:
    assert check_int("max_retries", 0, 0) == 0
    with pytest.raises(ConfigurationError, match=r"max_batch_items must be an int in 1\.\.2048"):
        check_int("max_batch_items", 4096, 1, 2048)
    with pytest.raises(ConfigurationError, match="max_length must be an int >= 2, not bool"):
        check_int("max_length", True, 2)  # a bool is not an int here


def test_input_values_raise_input_errors_and_type_errors() -> None:
    with pytest.raises(InputError, match="batch_size must be a positive int, got 0"):
        check_int("batch_size", 0, error=InputError)
    with pytest.raises(InputTypeError, match="dimensions must be a positive int, not str"):
        check_int_or_none("dimensions", "64", error=InputError)
    assert check_int_or_none("dimensions", None, error=InputError) is None


def test_cli_values_raise_argparse_errors() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="^must be a positive int, got -1$"):
        check_int("", -1, error=argparse.ArgumentTypeError)
