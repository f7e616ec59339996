"""Keys, the SBBE and AES-SIV suites, the `.msh` envelope and its parts (docs/ENVELOPE.md)."""
