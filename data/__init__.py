"""GLUE data: task registry (tasks), loading (loading), WordPiece tokenisation (tokenization),
dynamic-padding batches (batching) and metrics (metrics). Import from the submodules."""
