"""Runs INSIDE the Dify SDK's Python (cwd: plugins/dify): loads the plugin through the SDK's own
registration, runs the checks the JSON on stdin asks for, prints their results as JSON.

Not a test module (it imports dify_plugin, which the test suite's Python does not have).
"""

from __future__ import annotations

import json
import sys


def _error(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)}


def main() -> None:
    job = json.load(sys.stdin)
    sys.path.insert(0, ".")  # as `python -m main` run by Dify from the plugin folder
    from dify_plugin import DifyPluginEnv
    from dify_plugin.core.plugin_registration import PluginRegistration
    from dify_plugin.entities.model import EmbeddingInputType, ModelType

    registration = PluginRegistration(DifyPluginEnv())
    provider = registration.get_model_provider_instance("jina_v3")
    model = registration.get_model_instance("jina_v3", ModelType.TEXT_EMBEDDING)
    assert provider is not None and model is not None
    name = "jina-embeddings-v3"
    good = job["credentials"]
    out: dict[str, object] = {"model_class": type(model).__name__}

    docs = model.invoke(name, good, job["docs"], input_type=EmbeddingInputType.DOCUMENT)
    query = model.invoke(name, good, [job["query"]], input_type=EmbeddingInputType.QUERY)
    out["documents"] = docs.embeddings
    out["query"] = query.embeddings[0]
    out["usage_tokens"] = docs.usage.total_tokens
    with_v1 = model.invoke(name, {**good, "endpoint": good["endpoint"] + "/v1/"}, [job["query"]])
    out["with_v1"] = with_v1.embeddings[0]
    out["num_tokens"] = model.get_num_tokens(name, good, job["docs"])

    provider.validate_provider_credentials(good)
    out["validated"] = True
    for label, creds in (
        ("bad_key", {**good, "api_key": "not-the-key"}),
        ("bad_dimensions", {**good, "dimensions": "dimension"}),
    ):
        try:
            provider.validate_provider_credentials(creds)
            out[f"validate_{label}"] = None
        except Exception as exc:
            out[f"validate_{label}"] = _error(exc)
    try:
        model.invoke(name, {**good, "api_key": "not-the-key"}, ["x"])
    except Exception as exc:
        out["invoke_bad_key"] = _error(exc)

    module = type(model)._invoke.__globals__  # the plugin module's namespace, as loaded
    plain = module["Settings"]({})
    out["defaults"] = {
        "endpoint": plain.endpoint,
        "api_key": plain.api_key,
        "model": plain.model,
        "dimensions": plain.dimensions,
        "truncate": plain.truncate,
        "attempt_timeout": module["ATTEMPT_TIMEOUT"],
        "total_timeout": module["TOTAL_TIMEOUT"],
        "max_retries": module["MAX_RETRIES"],
        "max_request_timeout": DifyPluginEnv().MAX_REQUEST_TIMEOUT,
    }
    long_text = "word " * job["long_words"]
    clipped = model.invoke(name, good, [long_text])
    out["long_truncated"] = len(clipped.embeddings)
    try:
        model.invoke(name, {**good, "truncate": "false"}, [long_text])
    except Exception as exc:
        out["long_refused"] = _error(exc)

    many = model.invoke(name, good, [f"text {i}" for i in range(job["many"])])
    out["many"] = [len(many.embeddings), len({len(v) for v in many.embeddings})]
    out["many_first_last"] = [many.embeddings[0], many.embeddings[-1]]

    # fail fast (one retry, not six with backoff: ~30 s); the module's namespace, as loaded
    module["MAX_RETRIES"] = 1
    try:
        model.invoke(name, {**good, "endpoint": job["dead_endpoint"]}, ["x"])
    except Exception as exc:
        out["invoke_dead"] = _error(exc)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
