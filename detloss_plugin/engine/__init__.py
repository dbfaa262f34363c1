"""Integration with mmengine's Runner: safe checkpoint loading, CPU/GPU launch set-up,
a hook that draws training curves, and a validation loop that also reports the
validation loss."""
from .checkpoint import (CorruptCheckpointError, disable_safe_checkpoint_loading,
                         enable_safe_checkpoint_loading, load_from_local_safe,
                         mmengine_safe_globals)
from .hooks import AtomicCheckpointHook, TrainingCurvesHook
from .launch import setup_device_and_launcher, shutdown_distributed
from .val_loss import ValLossLoop, val_losses

__all__ = ['enable_safe_checkpoint_loading', 'load_from_local_safe', 'mmengine_safe_globals',
           'disable_safe_checkpoint_loading', 'CorruptCheckpointError',
           'setup_device_and_launcher', 'shutdown_distributed', 'TrainingCurvesHook',
           'AtomicCheckpointHook', 'ValLossLoop', 'val_losses']
