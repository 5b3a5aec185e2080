"""Helpers the tests share: models, mappers, seeders, fixtures data, signing keys."""
