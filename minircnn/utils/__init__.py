"""Small helpers the detector and the tools share.

Argument checks (validate), user-facing
errors, atomic file writes (fileio), reading .npz archives from their headers (archive),
worker processes, plain-text tables, the CLI's setting ranges (settings), BLAS threads."""
