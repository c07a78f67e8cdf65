"""Offline training: data sets, discriminators, losses, augmentation, the loop, evaluation,
and export into ``model_store``. The service never imports this package.

Where things are, by job:

- ``cli``: every ``python -m training`` command and its options; library errors become
  one-line messages here and nowhere else.
- ``config``: the run's frozen ``TrainConfig`` and the named presets.
- ``data/``: the data-set file format (``dataset``), image reading (``images``) and the
  builders (``emoji``, ``folder``, ``mnist``).
- ``discriminators``, ``losses``, ``augment``, ``ema``: the parts of a GAN recipe.
- ``loop``: the ``Trainer`` (set-up, one step, the run); ``distributed``: torchrun/DDP.
- ``checkpoint``: the checkpoint folder format; ``resume``: what a run's checkpoint holds
  and how a ``Trainer`` is put back from one; ``atomic``: whole-or-nothing file writes.
- ``export``: a run's EMA generator into the model store; ``samples``, ``plots``: grids and
  loss curves.
- ``preflight``: checks before a scarce GPU run (device, compiled vs eager, a run moved
  between devices); ``transfer``: a stored model packed into checked parts and imported.
- ``evaluation/``: the protocol, the metrics by name, the table, the report and the frozen
  feature network; ``metrics/``: the metric functions themselves (FD/KID, C2ST, P/R,
  nearest neighbours, Parzen, Inception).
"""
