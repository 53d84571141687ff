"""Where artifacts live and how they are read and written: layout.py names every artifact (keys relative to the
storage root), store.py moves bytes (the I/O seam: LocalStore now, object storage next), paths.py holds the
local-file primitives (safe names, confined paths, atomic writes, locks)."""
