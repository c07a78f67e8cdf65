"""Offline training: data sets, discriminators, losses, augmentation, the loop, evaluation,
and export into ``model_store``. The service never imports this package."""
