"""Built-in transfer jobs: export, import (keep or remap), the stage chain and the key map."""
