"""What a person points at (folders, object stores, archives, captions, uploads under allowed roots),
the settings these read, and the one gate every visitor input passes. Imports only embed/."""
