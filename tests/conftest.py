import os
import shutil
import tempfile

# The suite starts from nothing: a fresh model cache (the GPT-2 tokenizer folder and the SmolLM2
# safetensors conversion are built inside the run), and no hub.
_OWN_CACHE = None if "ADVGEN_CACHE" in os.environ else tempfile.mkdtemp(prefix="advgen-cache-")
os.environ.setdefault("ADVGEN_CACHE", _OWN_CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:  # the SmolLM2 conversion alone is about 0.5 GB
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
