"""The service: settings, a dynamic batcher that owns the device, a cache, metrics, routes.

Imports ``model_store`` for what a model is; never imports ``training``.
"""

from app.main import create_app

__all__ = ["create_app"]
