"""Encrypted FedAvg on scikit-learn's digits as a Flower App (see ../pyproject.toml)."""
