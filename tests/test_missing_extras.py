"""A missing extra fails with an ImportError whose message is the exact pip command."""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == {blocked!r}:
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize(
    ("code", "blocked", "extra"),
    [
        ("import jv3_integrations.qdrant", "qdrant_client", "qdrant"),
        ("import jv3_integrations.milvus", "pymilvus", "milvus"),
        ("import jv3_integrations.pinecone", "pinecone", "pinecone"),
        ("import jv3_integrations.haystack", "haystack", "haystack"),
        ("import jv3_integrations.llama_index", "llama_index", "llama-index"),
        ("import jv3_integrations.langchain", "langchain_core", "langchain"),
        ("import jv3_integrations.ray", "ray", "ray"),
        (
            "from jv3_integrations import LocalProvider\n"
            "from tests.conftest import CONFORMANCE_DIR\n"
            "LocalProvider(str(CONFORMANCE_DIR)).embed(['x'])",
            "torch",
            "local",
        ),
    ],
)
def test_missing_extra_names_the_pip_command(code: str, blocked: str, extra: str) -> None:
    script = BLOCKER.format(blocked=blocked) + (
        "from jv3_integrations import MissingDependencyError\n"
        "try:\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "except MissingDependencyError as e:\n"
        "    assert isinstance(e, ImportError)\n"
        "    print(e)\n"
        "else:\n"
        "    print('NO ERROR')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"pip install 'jv3-integrations[{extra}]'" in out.stdout, out.stdout
