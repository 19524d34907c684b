"""`saved_model_cli` with the TensorFlow Text ops registered.

The stock `saved_model_cli run` cannot execute graphs that use custom ops, and tfkd exports
tokenize with TF Text ops. This wrapper only imports `tensorflow_text` first:

    python tools/saved_model_cli_text.py run --dir EXPORT/1 --tag_set serve \
        --signature_def serving_default --input_exprs 'source=["Ein Mann fährt Fahrrad."]'
"""

import sys

import tensorflow_text  # noqa: F401  (registers the ops)
from tensorflow.python.tools.saved_model_cli import main

if __name__ == "__main__":
    sys.argv[0] = "saved_model_cli"
    sys.exit(main())
