"""One-line mutations of promises made in README.md / SECURITY.md, and the tests that must
catch each (see tests/README.md). ``tests/mutations/run.py`` applies them one at a time.

Each entry: ``name``, the ``promise`` it breaks, the source ``path`` (under ``src/``), the
exact ``old`` text (must occur exactly once) and its ``new`` replacement, and ``tests``: the
pytest node ids or ``-k`` selections run against the mutant (at least one must fail).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    promise: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "default-timeout-5s",
        "README: the API client's request timeout is 60 s by default",
        "jv3_integrations/core/_api.py",
        "        timeout: float = 60.0,\n",
        "        timeout: float = 5.0,\n",
        ("tests/core/test_api.py::test_default_request_timeout_is_60_seconds",),
    ),
    Mutation(
        "int8-no-op",
        'README: quantize="int8" runs int8 matmuls at cosine >= 0.997 to fp32',
        "jv3_integrations/core/_local.py",
        "                net.enable_int8()\n",
        "                pass\n",
        ("tests/core/test_local.py::test_int8_is_close_to_fp32",),
    ),
    Mutation(
        "qdrant-bq-no-rescore",
        "README: Qdrant binary quantization rescores candidates with the original vectors",
        "jv3_integrations/integrations/qdrant.py",
        "rescore=True, oversampling=self.oversampling",
        "rescore=False, oversampling=self.oversampling",
        ("tests/integrations/test_qdrant.py",),
    ),
    Mutation(
        "texts-logged-at-debug",
        "SECURITY.md: logs never hold input texts",
        "jv3_integrations/core/_provider.py",
        "    out = list(texts)\n",
        '    out = list(texts)\n    __import__("logging").getLogger("jv3_integrations").debug("texts %r", out)\n',
        ("tests/reliability/test_secrets.py::test_input_texts_never_appear_in_logs",),
    ),
    Mutation(
        "serve-loopback-guard-off",
        "SECURITY.md: jv3 serve without a key binds loopback only",
        "jv3_integrations/server/__init__.py",
        "    if key is None and not is_loopback(host) and not insecure_no_auth:\n",
        "    if False:\n",
        (
            "tests/server/test_server.py::test_serve_refuses_public_bind_without_key",
            "tests/cli/test_cli.py::test_serve_refuses_public_host_without_key",
        ),
    ),
    Mutation(
        "stale-chunks-kept",
        "README: re-indexing a shortened document leaves no stale chunk",
        "jv3_integrations/integrations/_store.py",
        "                self._delete_stale_chunks({p.doc_id: len(p.chunks) for p in group})\n",
        "                pass\n",
        (
            "tests/reliability/test_ingest_faults.py::test_documents_fault_then_rerun_leaves_exactly_the_current_chunks",
        ),
    ),
    Mutation(
        "body-limit-off",
        "SECURITY.md: the server stops reading a body past max_body_bytes (413)",
        "jv3_integrations/server/_body.py",
        "                    if got + n > self.max_body_bytes:\n",
        "                    if got + n > 100 * self.max_body_bytes:\n",
        (
            "tests/reliability/test_server_hardening.py::test_streamed_oversized_body_is_cut_off_at_the_limit",
        ),
    ),
    Mutation(
        "body-budget-off",
        "SECURITY.md: request bodies are admitted against one server-wide budget before read",
        "jv3_integrations/server/_body.py",
        "            if not held.take(size):\n",
        "            if not held.take(0):\n",
        (
            "tests/server/test_body_budget.py::test_declared_bodies_past_the_budget_get_429_before_being_read",
        ),
    ),
    Mutation(
        "request-timeout-off",
        "SECURITY.md: every admitted request is answered within --request-timeout",
        "jv3_integrations/server/_app.py",
        "                async with asyncio.timeout(self.request_timeout):\n",
        "                async with asyncio.timeout(None):\n",
        (
            "tests/server/test_load_bounds.py::test_admitted_work_is_answered_within_the_request_timeout",
        ),
    ),
    Mutation(
        "serve-option-range-off",
        "SECURITY.md: every jv3 serve option is checked against its range",
        "jv3_integrations/server/_limits.py",
        "    if not math.isfinite(number) or not lim.low <= number <= lim.high:\n",
        "    if False:\n",
        (
            "tests/server/test_serve_options.py::test_a_bad_serve_option_is_one_line_naming_its_range",
        ),
    ),
    Mutation(
        "device-default-cpu",
        "README: the local model defaults to cuda (bf16) > mps > cpu",
        "jv3_integrations/core/_local_device.py",
        "    elif torch.cuda.is_available():\n",
        "    elif False:\n",
        ("tests/core/test_local.py::test_default_device_is_cuda_bf16_then_mps_then_cpu",),
    ),
    Mutation(
        "compile-no-op",
        "README: compile=True runs the layers through torch.compile",
        "jv3_integrations/core/_local.py",
        "                net.enable_compile()\n",
        "                pass\n",
        ("tests/core/test_local.py::test_compile_runs_the_layers_through_torch_compile",),
    ),
    Mutation(
        "openai-user-refused",
        "docs/openai-compatible.md: OpenAI's user field is accepted (and ignored)",
        "jv3_integrations/server/_request.py",
        '_OPENAI_FIELDS: Final = frozenset({OPENAI_ENCODING_FIELD, "user"})\n',
        "_OPENAI_FIELDS: Final = frozenset({OPENAI_ENCODING_FIELD})\n",
        ("tests/server/test_openai_compat.py::test_user_is_accepted_and_never_logged",),
    ),
    Mutation(
        "openai-encoding-format-any-value",
        "docs/openai-compatible.md: encoding_format takes only 'float' or 'base64'",
        "jv3_integrations/server/_request.py",
        "    if openai is not None and openai not in OPENAI_ENCODINGS:",
        "    if openai is not None and openai not in EMBEDDING_TYPES:",
        (
            "tests/server/test_openai_compat.py::test_openai_and_jina_encoding_names_agree_or_are_refused",
        ),
    ),
)
