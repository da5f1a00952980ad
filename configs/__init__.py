"""ml-collections configs: `base` (the full experiment), `toy` (the embedded default), `tiny` (smoke tests).

Each file defines `get_config()`; derived configs import `base` and set only what differs.
"""
