"""One parser for the provider spec: parse, describe without secrets, build (issue 23)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jv3_integrations import ConfigurationError, JinaAPIProvider, LocalProvider, load_provider
from jv3_integrations.core import ProviderSpec, redact_url


def test_the_three_forms() -> None:
    assert ProviderSpec.parse(" api ") == ProviderSpec("api")
    assert ProviderSpec.parse("local: jinaai/jina-embeddings-v3") == ProviderSpec(
        "local", "jinaai/jina-embeddings-v3"
    )
    assert ProviderSpec.parse("http://127.0.0.1:8080/") == ProviderSpec(
        "http", "http://127.0.0.1:8080"
    )
    for spec in ("api", "local:./m", "https://example.com/v1"):
        assert str(ProviderSpec.parse(spec)) == spec


@pytest.mark.parametrize(
    "bad, says",
    [
        ("local:", "model directory or Hub id"),
        ("ftp://host", "unknown provider spec"),
        ("apis", "unknown provider spec"),
        ("http://", "no host"),
    ],
)
def test_a_bad_spec_says_which_forms_work(bad: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        ProviderSpec.parse(bad)
    with pytest.raises(ConfigurationError):
        load_provider(bad)


def test_describe_never_shows_a_secret() -> None:
    spec = ProviderSpec.parse("https://user:s3cret@example.com:8443/jina/?token=s3cret#frag")
    assert spec.describe() == "https://example.com:8443/jina"
    with pytest.raises(ConfigurationError) as info:
        ProviderSpec.parse("ftp://user:s3cret@host")
    assert "s3cret" not in str(info.value)
    assert redact_url("http://[::1]:9/x?k=1") == "http://[::1]:9/x"
    assert redact_url("local:./m") == "local:./m"


def test_absolute_makes_an_existing_local_dir_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert ProviderSpec.parse("local:./model").absolute().target == str(tmp_path / "model")
    hub = ProviderSpec.parse("local:jinaai/jina-embeddings-v3")
    assert hub.absolute() == hub  # a Hub id stays one
    assert ProviderSpec.parse("api").absolute() == ProviderSpec("api")


def test_build_makes_the_provider_without_io(conformance_dir: Path) -> None:
    local = ProviderSpec.parse(f"local:{conformance_dir}").build()
    assert isinstance(local, LocalProvider)
    remote = ProviderSpec.parse("http://127.0.0.1:9").build(api_key="k", dimensions=8)
    assert isinstance(remote, JinaAPIProvider) and remote.dimensions == 8
    remote.close()
