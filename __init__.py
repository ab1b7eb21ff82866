"""smelt: make a small, local language model good at one task.

The repository root is this package: ``signatures`` -> ``programs`` -> ``lm`` -> ``optimizers`` -> ``eval``
read top to bottom as the pipeline does; ``commands`` holds each CLI command as a library function.
"""

import os

# Offline/private use: LiteLLM would otherwise fetch its model cost map from GitHub on import (warnings, retries).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
