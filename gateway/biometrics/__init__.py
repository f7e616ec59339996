"""Biometric key binding: capture preprocessing, MSE-Net features, binarisation, fuzzy extractor, key release."""
