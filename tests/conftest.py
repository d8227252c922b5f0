import os
import tempfile

# The suite starts from nothing: a fresh model cache (the GPT-2 tokenizer folder and the SmolLM2
# safetensors conversion are built inside the run), and no hub.
os.environ.setdefault("ADVGEN_CACHE", tempfile.mkdtemp(prefix="advgen-cache-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
