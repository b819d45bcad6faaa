"""Flower apps: a thin ClientApp and ServerApp around pwfl's training and strategies."""
