"""What the stream becomes: each live turn's mirror (live.py), the registry that seals
their writes (recorder.py), and the writer that stores them exactly once (writer.py)."""
