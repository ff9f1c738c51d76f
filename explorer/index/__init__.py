"""FAISS indexes of a folder: the SQLite store (the truth), the derived FAISS file, an opened index and
its queries, the registry of indexes, and the builds (local, Ray). Imports inputs/ and embed/."""
