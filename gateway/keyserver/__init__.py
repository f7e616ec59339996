"""The cloud-side key-release service: holds one share of each recipient's K_secret and the TOTP secret."""
