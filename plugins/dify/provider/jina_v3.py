"""The provider: validates the credentials form by one short call to the endpoint."""

from __future__ import annotations

from collections.abc import Mapping

from dify_plugin import ModelProvider
from dify_plugin.entities.model import ModelType

DEFAULT_MODEL = "jina-embeddings-v3"


class JinaV3Provider(ModelProvider):
    def validate_provider_credentials(self, credentials: Mapping) -> None:
        """Raise CredentialsValidateFailedError (with our message) unless one call succeeds."""
        model = self.get_model_instance(ModelType.TEXT_EMBEDDING)
        model.validate_credentials(model=DEFAULT_MODEL, credentials=credentials)
